"""``session/update`` notifications of one turn, mapped to :class:`AcpUpdate` callbacks and
folded into the turn's :class:`PromptResult`.

Update kinds passed to ``on_update`` (``data`` is camelCase JSON, ready for events):

- ``agent_message_chunk`` ``{"text"}`` — a piece of the reply (text blocks only);
- ``agent_thought_chunk`` ``{"text"}``;
- ``tool_call`` / ``tool_call_update`` — the tool call's merged state
  ``{"toolCallId", "title", "kind", "status", "rawInput", "rawOutput", "content", "locations"}``
  (absent keys were never sent);
- ``plan`` ``{"entries": [{"content", "priority", "status"}]}`` — the whole current plan;
- ``permission`` ``{"toolCallId", "policy", "toolKind", "allowed", "optionId"}`` — how a
  ``session/request_permission`` was answered;
- ``usage`` and any other ACP update kind, passed through as dumped by the SDK.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from acp_app.permissions import PermissionDecision

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AcpUpdate:
    """One update of a running turn (see the module docstring for the kinds)."""

    kind: str
    data: dict[str, Any]


OnUpdate = Callable[[AcpUpdate], Awaitable[None] | None]


@dataclass
class PromptResult:
    """The outcome of one ``session/prompt``: the stop reason (``end_turn``, ``cancelled``,
    ``max_tokens``, ``max_turn_requests``, ``refusal``), the reply text, the tool calls in
    first-seen order (merged state), the last plan, the permission answers and usage."""

    stop_reason: str
    text: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    plan: list[dict[str, Any]] = field(default_factory=list)
    permissions: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None


def _dump(model: BaseModel) -> dict[str, Any]:
    data = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    data.pop("sessionUpdate", None)
    data.pop("_meta", None)
    return data


def _block_text(block: Any) -> str:
    return getattr(block, "text", "") if getattr(block, "type", None) == "text" else ""


class TurnCollector:
    """Collects one turn's updates and forwards each to ``on_update`` (errors are logged,
    never raised into the harness connection)."""

    def __init__(self, on_update: OnUpdate | None) -> None:
        self._on_update = on_update
        self._text: list[str] = []
        self._tool_calls: dict[str, dict[str, Any]] = {}
        self._plan: list[dict[str, Any]] = []
        self._permissions: list[dict[str, Any]] = []
        self._usage: dict[str, Any] | None = None

    async def apply(self, update: BaseModel) -> None:
        """Fold one ``session/update`` payload into the turn and emit it."""
        kind = getattr(update, "session_update", "unknown")
        handler = getattr(self, f"_on_{kind}", None)
        data = handler(update) if handler else _dump(update)
        await self._emit(AcpUpdate(kind="usage" if kind == "usage_update" else kind, data=data))

    async def permission(self, tool_call_id: str, decision: PermissionDecision) -> None:
        """Record how a permission request was answered."""
        data = {"toolCallId": tool_call_id, **decision.as_dict()}
        self._permissions.append(data)
        await self._emit(AcpUpdate(kind="permission", data=data))

    def tool_kind(self, tool_call_id: str) -> str | None:
        """The kind a tool call announced earlier in this turn, if any."""
        return self._tool_calls.get(tool_call_id, {}).get("kind")

    def result(self, stop_reason: str) -> PromptResult:
        return PromptResult(
            stop_reason=stop_reason,
            text="".join(self._text),
            tool_calls=[dict(call) for call in self._tool_calls.values()],
            plan=list(self._plan),
            permissions=list(self._permissions),
            usage=self._usage,
        )

    def _on_agent_message_chunk(self, update: Any) -> dict[str, Any]:
        text = _block_text(update.content)
        self._text.append(text)
        return {"text": text}

    def _on_agent_thought_chunk(self, update: Any) -> dict[str, Any]:
        return {"text": _block_text(update.content)}

    def _on_tool_call(self, update: Any) -> dict[str, Any]:
        call = _dump(update)
        self._tool_calls[call["toolCallId"]] = call
        return dict(call)

    def _on_tool_call_update(self, update: Any) -> dict[str, Any]:
        changes = _dump(update)
        call = self._tool_calls.setdefault(changes["toolCallId"], {})
        call.update(changes)
        return dict(call)

    def _on_plan(self, update: Any) -> dict[str, Any]:
        self._plan = [_dump(entry) for entry in update.entries]
        return {"entries": list(self._plan)}

    def _on_usage_update(self, update: Any) -> dict[str, Any]:
        self._usage = _dump(update)
        return dict(self._usage)

    async def _emit(self, update: AcpUpdate) -> None:
        if self._on_update is None:
            return
        try:
            result = self._on_update(update)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("acp on_update callback failed for %s", update.kind)

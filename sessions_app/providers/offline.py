"""The offline model: a deterministic scripted model driven by a rules file.

Needs no network, so the embedded default serves out of the box, and tests drive it
for fast flows. The rules (``docs/offline-model.md``) come from the JSON file named by
``OPENCLAW_OFFLINE_RULES`` or ``models.providers.offline.rulesPath``; the first rule
that matches the *latest input* (everything after the last assistant message: user
messages, ``System:`` lines, tool results) answers. The built-in rules reply in a
friendly way, echoing the user's message.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from . import ModelRequest, ProviderError, Stop, StreamItem, TextDelta, ToolCall, Usage

BUILTIN_RULES: list[dict[str, Any]] = [
    {"on": "tool", "reply": "Done. {toolResults}"},
    # A heartbeat with nothing queued is acknowledged (and so stays silent), as a real
    # model following the default heartbeat prompt does; one with System: lines is answered.
    {"match": "reply HEARTBEAT_OK", "unlessSystem": True, "reply": "HEARTBEAT_OK"},
    {"reply": "Hello! I'm the offline model of this gateway. You said: {user}"},
]
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_cache_lock = threading.Lock()
_cache: dict[str, Any] = {"key": None, "rules": None}


@dataclass
class LatestInput:
    """What the model got since its last answer."""

    text: str
    user: str
    system: str
    tool_results: str
    has_user: bool
    has_tool: bool


class OfflineProvider:
    name = "offline"

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        latest = latest_input(request.messages)
        rule, match = choose_rule(load_rules(), latest)
        values = _values(latest, match)
        await asyncio.sleep(_number(rule, "delayMs") / 1000)
        if rule.get("error"):
            raise ProviderError(_fill(str(rule["error"]), values))
        reply = _fill(str(rule.get("reply", "")), values)
        async for delta in _chunks(reply, rule):
            yield delta
        calls = [_tool_call(spec, values) for spec in rule.get("toolCalls") or []]
        for call in calls:
            yield call
        yield Usage(input_tokens=_tokens(json.dumps(request.messages)), output_tokens=_tokens(reply) or 1)
        yield Stop(rule.get("stopReason") or ("tool_calls" if calls else "stop"))


def latest_input(messages: list[dict[str, Any]]) -> LatestInput:
    """The messages after the last assistant message, split by kind."""
    start = max((i + 1 for i, m in enumerate(messages) if m.get("role") == "assistant"), default=0)
    tail = [m for m in messages[start:] if m.get("role") != "system"]
    users = [_text(m) for m in tail if m.get("role") == "user"]
    tools = [_text(m) for m in tail if m.get("role") == "tool"]
    lines = [line for text in users for line in text.splitlines() if line.startswith("System: ")]
    bodies = [_strip_system(text) for text in users]
    return LatestInput(
        text="\n".join(_text(m) for m in tail), user=next((b for b in reversed(bodies) if b), ""),
        system="\n".join(lines), tool_results="\n".join(tools), has_user=any(bodies), has_tool=bool(tools),
    )  # fmt: skip


def choose_rule(rules: list[dict[str, Any]], latest: LatestInput) -> tuple[dict[str, Any], re.Match | None]:
    """The first rule matching ``latest`` (the built-in rules when none does)."""
    for rule in [*rules, *BUILTIN_RULES]:
        matched, match = _matches(rule, latest)
        if matched:
            return rule, match
    return BUILTIN_RULES[-1], None


def _matches(rule: dict[str, Any], latest: LatestInput) -> tuple[bool, re.Match | None]:
    on = rule.get("on") or ("user" if rule.get("toolCalls") else "any")
    if (on == "user" and not latest.has_user) or (on == "tool" and not latest.has_tool):
        return False, None
    if rule.get("unlessSystem") and latest.system:
        return False, None
    if rule.get("regex"):
        match = re.search(rule["regex"], latest.text)
        return match is not None, match
    if rule.get("match"):
        return str(rule["match"]).lower() in latest.text.lower(), None
    return True, None


def load_rules() -> list[dict[str, Any]]:
    """The rules of the configured file (cached until the file changes); [] without one."""
    path = rules_path()
    if not path:
        return []
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise ProviderError(f"offline model rules file not readable: {path}: {exc}") from exc
    key = (path, stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        if _cache["key"] != key:
            _cache["rules"], _cache["key"] = _parse_rules(Path(path)), key
        return _cache["rules"]


def rules_path() -> str | None:
    from openclaw_site.config import get_config

    env = os.environ.get("OPENCLAW_OFFLINE_RULES")
    if env:
        return env
    providers = (get_config().raw.get("models") or {}).get("providers") or {}
    offline = providers.get("offline") if isinstance(providers, dict) else None
    return offline.get("rulesPath") if isinstance(offline, dict) else None


def _parse_rules(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProviderError(f"offline model rules file {path} is not valid JSON: {exc}") from exc
    rules = data.get("rules") if isinstance(data, dict) else data
    if not isinstance(rules, list) or not all(isinstance(rule, dict) for rule in rules):
        raise ProviderError(f"offline model rules file {path}: expected a list of rule objects")
    for rule in rules:
        if rule.get("regex"):
            re.compile(rule["regex"])
    return rules


async def _chunks(reply: str, rule: dict[str, Any]) -> AsyncIterator[TextDelta]:
    size = max(1, int(_number(rule, "chunkSize") or 16))
    pause = _number(rule, "chunkDelayMs") / 1000
    for start in range(0, len(reply), size):
        if start and pause:
            await asyncio.sleep(pause)
        yield TextDelta(reply[start : start + size])


def _tool_call(spec: dict[str, Any], values: dict[str, str]) -> ToolCall:
    arguments = {k: _fill(v, values) if isinstance(v, str) else v for k, v in (spec.get("arguments") or {}).items()}
    return ToolCall(id=spec.get("id") or f"call_{uuid.uuid4().hex[:12]}", name=spec["name"], arguments=arguments)


def _values(latest: LatestInput, match: re.Match | None) -> dict[str, str]:
    values = {"input": latest.text, "user": latest.user, "system": latest.system, "toolResults": latest.tool_results}
    if match is not None:
        values |= {str(i): group or "" for i, group in enumerate(match.groups(), start=1)}
    return values


def _fill(template: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def _strip_system(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("System: ")).strip()


def _number(rule: dict[str, Any], name: str) -> float:
    value = rule.get(name) or 0
    return float(value) if isinstance(value, (int, float)) else 0.0


def _tokens(text: str) -> int:
    return (len(text) + 3) // 4

"""What the model sees at a step: the system prompt and the session's transcript.

The context is rebuilt from the transcript before every model step, so input that
arrived meanwhile (steered messages, system events, deliveries) is simply part of it.
A ``System:`` block directly before a user message is merged into that message (spec-a
§4.1: the lines, a blank line, then the body); elsewhere it is a user message of its
own. Tool calls left without a result (a crashed attempt) get a synthetic error result.
"""

from __future__ import annotations

import json
from typing import Any

from ..models import Run, Session, TranscriptEntry

HISTORY_LIMIT = 400
INTERRUPTED = json.dumps({"error": "tool call interrupted (no result recorded)"})


def system_prompt(*, session: Session, run: Run) -> str:
    lines = [
        "You are a helpful assistant running inside an OpenClaw-compatible session gateway.",
        f"Runtime: agent={session.agent_id} | session={session.key}",
    ]
    extra = (run.input or {}).get("extraSystemPrompt")
    if extra:
        lines.append(str(extra))
    return "\n".join(lines)


def build_messages(*, session: Session, run: Run) -> list[dict[str, Any]]:
    """The chat-completions ``messages`` of the next step."""
    entries = list(
        TranscriptEntry.objects.filter(session=session, transcript_id=session.session_id, archived=False)
        .order_by("-seq")[:HISTORY_LIMIT]
    )[::-1]
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt(session=session, run=run)}]
    pending_system: str | None = None
    for entry in entries:
        if entry.role == TranscriptEntry.Role.SYSTEM:
            pending_system = f"{pending_system}\n{entry.text}" if pending_system else entry.text
            continue
        message = _message(entry)
        if message is None:
            continue
        if pending_system is not None:
            if message["role"] == "user":
                message["content"] = f"{pending_system}\n\n{message['content']}"
            else:
                messages.append({"role": "user", "content": pending_system})
            pending_system = None
        messages.append(message)
    if pending_system is not None:
        messages.append({"role": "user", "content": pending_system})
    return _close_tool_calls(messages)


def _message(entry: TranscriptEntry) -> dict[str, Any] | None:
    if entry.role == TranscriptEntry.Role.USER:
        return {"role": "user", "content": entry.text}
    if entry.role == TranscriptEntry.Role.TOOL:
        block = next((b for b in entry.content if isinstance(b, dict) and b.get("type") == "toolResult"), {})
        return {"role": "tool", "tool_call_id": block.get("toolCallId", ""), "content": entry.text}
    calls = [b for b in entry.content if isinstance(b, dict) and b.get("type") == "toolCall"]
    message: dict[str, Any] = {"role": "assistant", "content": entry.text or None}
    if calls:
        message["tool_calls"] = [
            {"id": c["id"], "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments") or {})}}
            for c in calls
        ]  # fmt: skip
    elif not entry.text:
        return None
    return message


def _close_tool_calls(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop orphan tool results; answer unanswered tool calls with an error result."""
    out: list[dict[str, Any]] = []
    open_calls: list[str] = []
    for message in messages:
        if message["role"] == "tool":
            if message["tool_call_id"] in open_calls:
                open_calls.remove(message["tool_call_id"])
                out.append(message)
            continue
        out.extend(_interrupted(open_calls))
        open_calls = [c["id"] for c in message.get("tool_calls", [])]
        out.append(message)
    out.extend(_interrupted(open_calls))
    return out


def _interrupted(call_ids: list[str]) -> list[dict[str, Any]]:
    return [{"role": "tool", "tool_call_id": call_id, "content": INTERRUPTED} for call_id in call_ids]

"""The read side of ``sessions_list`` and ``sessions_history`` (spec-b §5).

Both read through the sessions selectors, then filter every row through the visibility
guard (``services.visibility``) and shape it as OpenClaw's tools do: list rows carry a
tool ``kind`` and ``channel``; history is sanitised (usage dropped, credential-like text
redacted, long texts cut at 4000 characters) and capped at 80 KB, oldest rows first.
"""

from __future__ import annotations

import json
import re
from typing import Any

from .. import keys
from ..models import Session
from ..selectors import chat_history, session_queryset
from ..serializers import message_row, session_row
from ..services.session_send import resolve_session_reference
from ..services.visibility import SessionForbiddenError, owned_keys, visibility_check, visibility_for, visible_session_filter

LIST_LIMIT_MAX = 200
LIST_SCAN_MAX = 1000
TEXT_MAX_CHARS = 4000
HISTORY_MAX_BYTES = 80 * 1024
TRUNCATED = "…(truncated)…"
TOO_LARGE = "[sessions_history omitted: message too large]"
KINDS = ("main", "group", "cron", "hook", "node", "other")
_SECRET_RE = re.compile(
    r"(sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}|"
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{16,}|(?i:(?:api[_-]?key|token|secret|password)\s*[:=]\s*)\S{6,})"
)


def _main_alias() -> str:
    from openclaw_site.config import get_config

    return get_config().main_session_key()


def display_key(key: str) -> str:
    return "main" if key == _main_alias() else key


def tool_kind(session: Session) -> str:
    """``main``, ``cron``, ``hook``, ``node``, ``group`` or ``other`` (spec-b §5.1)."""
    if session.key == _main_alias() or session.kind == Session.Kind.MAIN:
        return "main"
    parsed = keys.parse_agent_session_key(session.key)
    rest = parsed.rest if parsed else session.key
    for prefix, kind in (("cron:", "cron"), ("hook:", "hook"), ("node-", "node"), ("node:", "node")):
        if rest.startswith(prefix):
            return kind
    if session.chat_type in ("group", "channel") or ":group:" in session.key or ":channel:" in session.key:
        return "group"
    return "other"


def tool_channel(session: Session, kind: str) -> str:
    if kind in ("cron", "hook", "node"):
        return "internal"
    group = keys.parse_group_key(session.key)
    context = session.delivery_context or {}
    return session.channel or context.get("channel") or (group.channel if group else "") or "unknown"


# --- sessions_list -----------------------------------------------------------------------------


def sessions_list_for(*, requester_key: str, sandboxed: bool, params: dict[str, Any]) -> dict[str, Any]:
    """The sessions the requester may see, newest activity first."""
    visibility = visibility_for(requester_key=requester_key, sandboxed=sandboxed)
    qs = session_queryset(
        agent_id=params.get("agentId"), label=params.get("label"), search=params.get("search"),
        active_minutes=params.get("activeMinutes"), spawned_by=requester_key if sandboxed else None,
    )  # fmt: skip
    narrow = visible_session_filter(visibility=visibility)
    if narrow is not None:
        qs = qs.filter(narrow)
    if params.get("delegated") is not None:
        qs = qs.filter(acp__owner_session_key=requester_key) if params["delegated"] else qs.exclude(
            acp__owner_session_key__isnull=False
        )
    kinds = {kind for kind in params.get("kinds") or () if kind in KINDS}
    limit = min(int(params.get("limit") or LIST_LIMIT_MAX), LIST_LIMIT_MAX)
    owned = owned_keys(requester_key=requester_key)
    rows = []
    for session in qs.distinct()[:LIST_SCAN_MAX]:
        if len(rows) >= limit:
            break
        row = _list_row(session, visibility=visibility, owned=session.key in owned, kinds=kinds)
        if row is not None:
            rows.append(row)
    _attach_messages(rows, int(params.get("messageLimit") or 0))
    return {"count": len(rows), "sessions": rows}


def _list_row(session: Session, *, visibility, owned: bool, kinds: set[str]) -> dict[str, Any] | None:
    try:
        visibility_check(visibility=visibility, target_key=session.key, action="list", owned=owned)
    except SessionForbiddenError:
        return None
    kind = tool_kind(session)
    if kinds and kind not in kinds:
        return None
    row = session_row(session)
    row = {**row, "key": display_key(session.key), "sessionKey": session.key, "kind": kind,
           "channel": tool_channel(session, kind), "label": session.label,
           "delegated": bool(Session.objects.filter(pk=session.pk, acp__owner_session_key__isnull=False).exists())}  # fmt: skip
    if row["delegated"]:
        row["delegate"] = _delegate_fields(session)
    return row


def _delegate_fields(session: Session) -> dict[str, Any]:
    """A hub-delegated worker's label, harness, state, last activity and expiry (acp_app)."""
    from acp_app.selectors import delegate_row

    fields = delegate_row(session.acp)
    return {name: fields[name] for name in ("label", "harness", "state", "lastActivityAt", "idleExpiresAt",
                                            "maxAgeExpiresAt", "expiresAt")}  # fmt: skip


def _attach_messages(rows: list[dict[str, Any]], message_limit: int) -> None:
    if message_limit <= 0:
        return
    for row in rows:
        history = chat_history(key=row["sessionKey"], limit=max(message_limit * 3, 20))
        messages = [m for m in history["messages"] if m.get("role") != "tool"]
        row["messages"] = [_sanitize(m)[0] for m in messages[-message_limit:]]


# --- sessions_history --------------------------------------------------------------------------


def sessions_history_for(*, requester_key: str, sandboxed: bool, params: dict[str, Any]) -> dict[str, Any]:
    """A visible session's recent messages, sanitised and capped at 80 KB."""
    key = resolve_session_reference(raw=params["sessionKey"].strip(), requester_key=requester_key)
    visibility = visibility_for(requester_key=requester_key, sandboxed=sandboxed)
    visibility_check(visibility=visibility, target_key=key, action="history")
    offset = int(params.get("offset") or 0)
    history = chat_history(key=key, limit=params.get("limit"), offset=offset)
    messages = history["messages"]
    if not params.get("includeTools"):
        messages = [m for m in messages if m.get("role") != "tool"]
    sanitized = [_sanitize(m) for m in messages]
    kept, dropped, size = _cap(sanitized)
    result = {
        "sessionKey": display_key(key), "messages": kept, "truncated": dropped > 0 or any(s[1] for s in sanitized),
        "droppedMessages": dropped, "contentTruncated": any(s[1] for s in sanitized),
        "contentRedacted": any(s[2] for s in sanitized), "bytes": size, "totalMessages": history.get("totalMessages", 0),
        "hasMore": bool(history.get("hasMore")), "offset": offset,
    }  # fmt: skip
    if history.get("nextOffset") is not None:
        result["nextOffset"] = history["nextOffset"]
    return result


def _sanitize(message: dict[str, Any]) -> tuple[dict[str, Any], bool, bool]:
    """``(message, truncated, redacted)`` without usage/cost/details, texts cut and redacted."""
    clean = {k: v for k, v in message.items() if k not in ("usage", "cost", "details")}
    truncated = redacted = False
    blocks = []
    for block in message.get("content") or []:
        if not isinstance(block, dict):
            continue
        block = {k: v for k, v in block.items() if k != "thinkingSignature"}
        if block.get("type") == "image" and block.get("data"):
            block = {"type": "image", "omitted": True, "bytes": len(str(block["data"]))}
        for field in ("text", "thinking", "partialJson"):
            if isinstance(block.get(field), str):
                text, cut, hidden = _clean_text(block[field])
                block[field] = text
                truncated, redacted = truncated or cut, redacted or hidden
        blocks.append(block)
    clean["content"] = blocks
    return clean, truncated, redacted


def _clean_text(text: str) -> tuple[str, bool, bool]:
    redacted_text, count = _SECRET_RE.subn("[redacted]", text)
    if len(redacted_text) > TEXT_MAX_CHARS:
        return redacted_text[:TEXT_MAX_CHARS] + TRUNCATED, True, count > 0
    return redacted_text, False, count > 0


def _cap(sanitized: list[tuple[dict[str, Any], bool, bool]]) -> tuple[list[dict[str, Any]], int, int]:
    messages = [entry[0] for entry in sanitized]
    sizes = [len(json.dumps(m, default=str).encode()) for m in messages]
    dropped = 0
    while len(messages) > 1 and sum(sizes) > HISTORY_MAX_BYTES:
        messages, sizes, dropped = messages[1:], sizes[1:], dropped + 1
    if messages and sum(sizes) > HISTORY_MAX_BYTES:
        messages = [{"role": "assistant", "content": TOO_LARGE}]
        sizes = [len(json.dumps(messages[0]).encode())]
    return messages, dropped, sum(sizes)

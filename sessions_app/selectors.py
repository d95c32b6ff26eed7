"""Reads of sessions and transcripts (spec-a §2.6), plus the health/status summaries.

Every function takes client-supplied keys and canonicalises them with
:func:`canonical_key`, so ``main``, ``agent:main:MAIN`` and ``agent:main:main`` are the
same session whichever door a call came through.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from . import keys
from .exceptions import (
    AmbiguousSessionError,
    MalformedSessionKeyError,
    RunNotFoundError,
    SendBlockedError,
    SessionNotFoundError,
    SessionSelectorError,
)
from .models import Run, Session, SystemEvent, TranscriptEntry
from .serializers import agent_default_model, child_keys_by_parent, message_row, ms, session_row

DEFAULT_LIST_LIMIT = 200
DEFAULT_HISTORY_LIMIT = 200
# keys.is_cron_run_session_key, as a database filter (runs of isolated cron jobs are hidden).
_CRON_RUN_KEY_RE = r"^agent:[^:]+:cron:[^:]+:run:[^:]+$"


def _config():
    from openclaw_site.config import get_config

    return get_config()


# --- keys and rows ----------------------------------------------------------------------


def canonical_key(raw: str, *, method: str = "session", agent_id: str | None = None) -> str:
    """The store key of a client-supplied key; a malformed ``agent:`` key is refused.

    With ``agent_id`` a relative key (``main``, ``dashboard:x``) belongs to that agent.
    """
    shape = keys.classify_session_key_shape(raw)
    if shape == "malformed_agent":
        raise MalformedSessionKeyError(raw.strip(), method)
    cfg = _config()
    if agent_id and shape == "legacy_or_alias" and keys.normalize_session_key(raw) not in ("global", "unknown"):
        raw = keys.to_agent_store_session_key(agent_id=agent_id, request_key=raw, main_key=cfg.main_key)
    return keys.resolve_session_store_key(cfg=cfg, session_key=raw)


def session_find(*, key: str) -> Session | None:
    """The session of a (raw or canonical) key, or None."""
    return Session.objects.filter(key=canonical_key(key)).first()


def session_get(*, key: str, message: str | None = None) -> Session:
    """The session of a key; raises :class:`SessionNotFoundError`."""
    canonical = canonical_key(key)
    session = Session.objects.filter(key=canonical).first()
    if session is None:
        raise SessionNotFoundError(canonical, message.format(key=canonical) if message else None)
    return session


def run_get(*, run_id: str) -> Run:
    """The run of ``run_id``; raises :class:`RunNotFoundError`."""
    run = Run.objects.filter(run_id=run_id).first()
    if run is None:
        raise RunNotFoundError(run_id)
    return run


def is_main_session_key(key: str, *, agent_id: str) -> bool:
    """True for the agent's main key (and ``global`` under scope global)."""
    cfg = _config()
    return key in (cfg.agent_main_session_key(agent_id), cfg.main_session_key())


# --- sessions.list ------------------------------------------------------------------------


def session_queryset(
    *,
    agent_id: str | None = None,
    label: str | None = None,
    spawned_by: str | None = None,
    search: str | None = None,
    active_minutes: int | None = None,
    include_global: bool = False,
    include_unknown: bool = False,
) -> QuerySet[Session]:
    """Sessions after the ``sessions.list`` filters, newest activity first."""
    qs = Session.objects.exclude(key__regex=_CRON_RUN_KEY_RE)
    if not include_global:
        qs = qs.exclude(key="global")
    if not include_unknown:
        qs = qs.exclude(key="unknown")
    if agent_id:
        qs = qs.filter(agent_id=keys.normalize_agent_id(agent_id))
    if label is not None and label.strip():
        qs = qs.filter(label=label.strip())
    if spawned_by:
        qs = qs.filter(spawned_by=canonical_key(spawned_by))
    if search and search.strip():
        term = search.strip()
        qs = qs.filter(
            Q(key__icontains=term) | Q(label__icontains=term) | Q(display_name__icontains=term) | Q(session_id=term)
        )
    if active_minutes:
        qs = qs.filter(updated_at__gte=timezone.now() - timedelta(minutes=active_minutes))
    return qs.order_by("-updated_at", "-id")


def session_list(
    *,
    limit: int | None = None,
    offset: int = 0,
    include_derived_titles: bool = False,
    include_last_message: bool = False,
    archived: bool | None = None,
    **filters: Any,
) -> dict[str, Any]:
    """The ``sessions.list`` result: one page of rows plus paging and model defaults."""
    limit = limit or DEFAULT_LIST_LIMIT
    qs = session_queryset(**filters) if not archived else Session.objects.none()
    total = qs.count()
    page = list(qs[offset : offset + limit])
    children = child_keys_by_parent(s.key for s in page)
    rows = [session_row(s, children=children[s.key]) for s in page]
    for session, row in zip(page, rows):
        _decorate(session, row, titles=include_derived_titles, last=include_last_message)
    more = offset + len(page) < total
    return {
        "ts": _now_ms(), "path": store_path(), "count": len(rows), "totalCount": total, "limitApplied": limit,
        "nextOffset": offset + len(page) if more else None, "hasMore": more, "defaults": list_defaults(),
        "sessions": rows,
    }  # fmt: skip


def _decorate(session: Session, row: dict[str, Any], *, titles: bool, last: bool) -> None:
    entries = transcript_current(session)
    if titles:
        first = entries.filter(role=TranscriptEntry.Role.USER).order_by("seq").first()
        if first is not None:
            row["derivedTitle"] = _snippet(first.text, 60)
    if last:
        latest = entries.order_by("-seq").first()
        if latest is not None:
            row["lastMessagePreview"] = _snippet(latest.text, 120)


def list_defaults() -> dict[str, Any]:
    cfg = _config()
    provider, model = agent_default_model(cfg.default_agent_id())
    declared = cfg.providers.get(provider)
    model_cfg = declared.model(model) if declared else None
    return {"modelProvider": provider, "model": model, "contextTokens": model_cfg.context_window if model_cfg else None}


def store_path() -> str:
    """Where sessions live (the database name stands in for OpenClaw's sessions.json path)."""
    return str(settings.DATABASES["default"]["NAME"])


# --- sessions.resolve ---------------------------------------------------------------------


def session_resolve(
    *,
    key: str | None = None,
    session_id: str | None = None,
    label: str | None = None,
    agent_id: str | None = None,
    spawned_by: str | None = None,
    include_global: bool = False,
    include_unknown: bool = False,
) -> str:
    """The key of exactly one session picked by key, sessionId or label (spec-a §2.6)."""
    from .services.session_patch import parse_label

    given = [value for value in (key, session_id, label) if value is not None and str(value).strip()]
    if len(given) > 1:
        raise SessionSelectorError("Provide either key, sessionId, or label (not multiple)")
    if not given:
        raise SessionSelectorError("Either key, sessionId, or label is required")
    if key is not None and key.strip():
        return session_get(key=key).key
    if session_id is not None and session_id.strip():
        return _resolve_session_id(session_id.strip())
    wanted = parse_label(label)
    qs = session_queryset(
        label=wanted, agent_id=agent_id, spawned_by=spawned_by,
        include_global=include_global, include_unknown=include_unknown,
    )  # fmt: skip
    found = list(qs.values_list("key", flat=True)[:2])
    if not found:
        raise SessionNotFoundError(None, f"No session found with label: {wanted}")
    if len(found) > 1:
        raise AmbiguousSessionError(f"Multiple sessions found with label: {wanted} ({', '.join(found)})", found)
    return found[0]


def _resolve_session_id(session_id: str) -> str:
    found = list(Session.objects.filter(Q(session_id=session_id) | Q(key=session_id)).values_list("key", flat=True)[:2])
    if not found:
        raise SessionNotFoundError(session_id, f"No session found: {session_id}")
    if len(found) > 1:
        raise AmbiguousSessionError(f"Multiple sessions found for sessionId: {session_id}", found)
    return found[0]


# --- send policy --------------------------------------------------------------------------


def resolve_send_policy(session: Session, cfg=None, *, channel: str | None = None) -> str:
    """``allow`` or ``deny``: the session's override, else the first matching deny rule
    of ``session.sendPolicy.rules``, else allow if any rule allowed, else the default."""
    if session.send_policy in ("allow", "deny"):
        return session.send_policy
    policy = (cfg or _config()).send_policy
    facts = _policy_facts(session, channel)
    matched_allow = False
    for rule in policy.get("rules", []):
        if not _rule_matches(rule.get("match") or {}, facts):
            continue
        if rule.get("action") == "deny":
            return "deny"
        matched_allow = True
    return "allow" if matched_allow else policy.get("default", "allow")


def assert_send_allowed(session: Session, cfg=None, *, channel: str | None = None) -> None:
    """Raise :class:`SendBlockedError` when the send policy denies the session."""
    if resolve_send_policy(session, cfg, channel=channel) == "deny":
        raise SendBlockedError(session.key)


def _policy_facts(session: Session, channel: str | None) -> dict[str, str]:
    context = session.delivery_context or {}
    group = keys.parse_group_key(session.key)
    derived_channel = group.channel if group else _key_channel(session.key)
    chat_type = group.kind if group else (session.chat_type or "direct")
    channel = channel or session.channel or context.get("channel") or derived_channel or ""
    return {"channel": channel.strip().lower(), "chatType": chat_type.strip().lower(), "key": session.key}


def _key_channel(key: str) -> str:
    parsed = keys.parse_agent_session_key(key)
    segments = (parsed.rest if parsed else key).split(":")
    return segments[0] if len(segments) >= 3 and segments[1] in ("direct", "dm") else ""


def _rule_matches(match: dict[str, str], facts: dict[str, str]) -> bool:
    if match.get("channel") and match["channel"].strip().lower() != facts["channel"]:
        return False
    if match.get("chatType") and match["chatType"].strip().lower() != facts["chatType"]:
        return False
    prefix = match.get("keyPrefix")
    return not prefix or facts["key"].startswith(prefix.strip().lower())


# --- transcripts --------------------------------------------------------------------------


def transcript_current(session: Session) -> QuerySet[TranscriptEntry]:
    """Entries of the session's current transcript (older sessionIds are archived)."""
    return TranscriptEntry.objects.filter(session=session, transcript_id=session.session_id, archived=False)


def chat_history(
    *, key: str, limit: int | None = None, offset: int = 0, max_chars: int | None = None, max_bytes: int | None = None
) -> dict[str, Any]:
    """The ``chat.history`` result: the newest ``limit`` messages, oldest first."""
    canonical = canonical_key(key)
    session = Session.objects.filter(key=canonical).first()
    if session is None:
        return {"sessionKey": canonical, "sessionId": None, "messages": [], "totalMessages": 0, "hasMore": False}
    limit = limit or DEFAULT_HISTORY_LIMIT
    entries = transcript_current(session)
    total = entries.count()
    page = list(entries.order_by("-seq")[offset : offset + limit])[::-1]
    messages = _fit_bytes([_clip_message(message_row(e), max_chars) for e in page], max_bytes)
    more = offset + len(page) < total
    return {
        "sessionKey": canonical, "sessionId": session.session_id, "messages": messages,
        "thinkingLevel": (session.settings or {}).get("thinkingLevel"), "totalMessages": total,
        "hasMore": more, "nextOffset": offset + len(page) if more else None,
        # Read before the messages: a client resumes with afterSeq=sessionSeq and loses nothing.
        "sessionSeq": session.event_seq,
    }  # fmt: skip


def _clip_message(row: dict[str, Any], max_chars: int | None) -> dict[str, Any]:
    if not max_chars:
        return row
    blocks = [
        {**b, "text": _clip(b["text"], max_chars)} if isinstance(b, dict) and isinstance(b.get("text"), str) else b
        for b in row["content"]
    ]
    return {**row, "content": blocks}


def _fit_bytes(messages: list[dict[str, Any]], max_bytes: int | None) -> list[dict[str, Any]]:
    """Drop the oldest messages until the JSON of the rest fits ``max_bytes``."""
    import json

    if not max_bytes:
        return messages
    sizes = [len(json.dumps(m, default=str).encode()) for m in messages]
    while messages and sum(sizes) > max_bytes:
        messages, sizes = messages[1:], sizes[1:]
    return messages


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def _snippet(text: str, limit: int) -> str:
    """One line of at most ``limit`` characters (previews, titles)."""
    return _clip(" ".join(text.split()), limit)


def session_preview(*, keys_: list[str], limit: int = 12, max_chars: int = 240) -> dict[str, Any]:
    """``sessions.preview``: the last messages of each key as short ``{role, text}`` items."""
    return {"ts": _now_ms(), "previews": [_preview_one(raw, limit, max_chars) for raw in keys_]}


def _preview_one(raw: str, limit: int, max_chars: int) -> dict[str, Any]:
    try:
        canonical = canonical_key(raw)
    except MalformedSessionKeyError as error:
        return {"key": raw, "status": "error", "items": [], "error": error.message}
    session = Session.objects.filter(key=canonical).first()
    if session is None:
        return {"key": canonical, "status": "missing", "items": []}
    entries = list(transcript_current(session).order_by("-seq")[:limit])[::-1]
    items = [{"role": e.role, "text": _snippet(e.text, max_chars)} for e in entries]
    return {"key": canonical, "status": "ok" if items else "empty", "items": items}


def session_detail(*, key: str, limit: int = DEFAULT_HISTORY_LIMIT) -> dict[str, Any]:
    """``sessions.get``: the full row and the newest ``limit`` messages."""
    session = session_get(key=key, message="session not found: {key}")
    entries = list(transcript_current(session).order_by("-seq")[:limit])[::-1]
    return {"ok": True, "key": session.key, "session": session_row(session), "messages": [message_row(e) for e in entries]}


# --- health, status, agents ---------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def _every(every_ms: int) -> str:
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if every_ms and every_ms % size == 0:
            return f"{every_ms // size}{unit}"
    return f"{every_ms}ms"


def _heartbeat(agent) -> dict[str, Any]:
    beat = agent.heartbeat
    if beat is None:
        return {"enabled": False, "every": "0m", "everyMs": 0}
    return {"enabled": True, "every": _every(beat.every_ms), "everyMs": beat.every_ms, "target": beat.target,
            "ackMaxChars": beat.ack_max_chars}  # fmt: skip


def _recent(qs: QuerySet[Session], count: int = 5) -> list[dict[str, Any]]:
    now = _now_ms()
    return [
        {"key": key, "updatedAt": ms(updated), "age": now - ms(updated)}
        for key, updated in qs.order_by("-updated_at").values_list("key", "updated_at")[:count]
    ]


def agents_summary() -> dict[str, Any]:
    """``agents.list``: the configured agents and the key defaults."""
    cfg = _config()
    agents = [
        {"id": a.id, "name": a.name, "default": a.default, "model": "/".join(agent_default_model(a.id))}
        for a in cfg.agents()
    ]
    return {"defaultId": cfg.default_agent_id(), "mainKey": cfg.main_key, "scope": cfg.scope, "agents": agents}


def health_summary() -> dict[str, Any]:
    """``health``: the gateway is up, its agents, heartbeats and session counts."""
    started = time.monotonic()
    cfg = _config()
    agents = []
    for agent in cfg.agents():
        qs = Session.objects.filter(agent_id=agent.id)
        agents.append({"agentId": agent.id, "name": agent.name, "isDefault": agent.default,
                       "heartbeat": _heartbeat(agent), "sessions": {"count": qs.count(), "recent": _recent(qs)}})  # fmt: skip
    default = cfg.agent(cfg.default_agent_id())
    every_ms = default.heartbeat.every_ms if default and default.heartbeat else 0
    return {
        "ok": True, "ts": _now_ms(), "durationMs": int((time.monotonic() - started) * 1000),
        "defaultAgentId": cfg.default_agent_id(), "agents": agents,
        "sessions": {"path": store_path(), "count": Session.objects.count(), "recent": _recent(Session.objects.all())},
        "heartbeatSeconds": every_ms // 1000, "channels": {}, "channelOrder": [], "channelLabels": {},
    }  # fmt: skip


def status_summary() -> dict[str, Any]:
    """``status``: heartbeats, queued system events of the main session, sessions, runs."""
    cfg = _config()
    main_key = cfg.main_session_key()
    recent = [session_row(s) for s in session_queryset()[:10]]
    by_agent = [
        {"agentId": a.id, "path": store_path(), "count": Session.objects.filter(agent_id=a.id).count(),
         "recent": _recent(Session.objects.filter(agent_id=a.id))}
        for a in cfg.agents()
    ]  # fmt: skip
    pending = SystemEvent.objects.pending().for_session(main_key).values_list("text", flat=True)[:20]
    return {
        "ts": _now_ms(),
        "heartbeat": {"defaultAgentId": cfg.default_agent_id(),
                      "agents": [{"agentId": a.id, **_heartbeat(a)} for a in cfg.agents()]},
        "channelSummary": [],
        "queuedSystemEvents": list(pending),
        "sessions": {"paths": [store_path()], "count": Session.objects.count(), "defaults": list_defaults(),
                     "recent": recent, "byAgent": by_agent},
        "runs": {"queued": Run.objects.queued().count(), "running": Run.objects.running().count()},
    }  # fmt: skip

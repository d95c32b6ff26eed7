"""The wire shapes of sessions and transcript messages (camelCase, epoch ms).

One definition for every door: the WebSocket RPC, REST and events all shape a session
with :func:`session_row` (the ``sessions.list`` row of spec-a §2.6) and a transcript
entry with :func:`message_row` (a ``chat.history`` message). Fields without a value are
left out, as OpenClaw leaves ``undefined`` out of its JSON.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from django.db.models import Q

from .models import Run, Session, TranscriptEntry

# Per-session toggles kept in ``Session.settings`` under their wire names.
SETTING_FIELDS = (
    "thinkingLevel", "fastMode", "verboseLevel", "traceLevel", "reasoningLevel", "responseUsage",
    "elevatedLevel", "execHost", "execSecurity", "execAsk", "execNode", "groupActivation", "envelope",
)  # fmt: skip


def ms(value: datetime | None) -> int | None:
    """Epoch milliseconds of an aware datetime (None stays None)."""
    return int(value.timestamp() * 1000) if value is not None else None


def wire_kind(session: Session) -> str:
    """OpenClaw's ``classifySessionKey``: ``global``, ``unknown``, ``group`` or ``direct``."""
    if session.key in ("global", "unknown"):
        return session.key
    if session.chat_type in ("group", "channel") or ":group:" in session.key or ":channel:" in session.key:
        return "group"
    return "direct"


def effective_model(session: Session) -> tuple[str, str]:
    """``(provider, model)`` the next turn uses: runtime > session override > agent default."""
    if session.model:
        return session.model_provider or "", session.model
    if session.model_override:
        return session.provider_override or "", session.model_override
    return agent_default_model(session.agent_id)


def agent_default_model(agent_id: str) -> tuple[str, str]:
    from openclaw_site.config import get_config

    cfg = get_config()
    agent = cfg.agent(agent_id) or cfg.agent(cfg.default_agent_id())
    return cfg.resolve_model(agent.model if agent else None)


def child_keys_by_parent(keys: Iterable[str]) -> dict[str, list[str]]:
    """``{parent key: [child keys]}`` of sessions spawned by (or parented to) ``keys``."""
    keys = list(keys)
    children: dict[str, list[str]] = {key: [] for key in keys}
    rows = Session.objects.filter(Q(spawned_by__in=keys) | Q(parent_session_key__in=keys))
    for key, spawned_by, parent in rows.values_list("key", "spawned_by", "parent_session_key").order_by("id"):
        for owner in {spawned_by, parent} & children.keys():
            children[owner].append(key)
    return children


def session_row(session: Session, *, children: list[str] | None = None) -> dict[str, Any]:
    """The camelCase session row (``sessions.list``, ``sessions.changed``, REST)."""
    if children is None:
        children = child_keys_by_parent([session.key])[session.key]
    provider, model = effective_model(session)
    row = {
        "key": session.key,
        "agentId": session.agent_id,
        "kind": wire_kind(session),
        "classification": session.kind,
        "isMain": session.kind == Session.Kind.MAIN,
        "sessionId": session.session_id,
        "updatedAt": ms(session.updated_at),
        "createdAt": ms(session.created_at),
        "sessionStartedAt": ms(session.session_started_at),
        "lastInteractionAt": ms(session.last_interaction_at),
        "archived": False,
        "state": session.state,
        "activeRunId": session.active_run_id,
        **_identity(session),
        **_settings(session),
        **_usage(session),
        "model": model,
        "modelProvider": provider,
        "modelOverride": session.model_override,
        "providerOverride": session.provider_override,
        **_route(session),
        **_lineage(session),
        "childSessions": children or None,
        **_run_summary(session),
    }
    return {name: value for name, value in row.items() if value is not None}


def _identity(session: Session) -> dict[str, Any]:
    return {
        "label": session.label,
        "displayName": session.display_name or None,
        "channel": session.channel or None,
        "chatType": session.chat_type or None,
        "origin": session.origin or None,
    }


def _settings(session: Session) -> dict[str, Any]:
    stored = session.settings or {}
    return {
        **{name: stored.get(name) for name in SETTING_FIELDS},
        "sendPolicy": session.send_policy,
        "queueMode": session.queue_mode,
        "queueDebounceMs": session.queue_debounce_ms,
        "queueCap": session.queue_cap,
        "queueDrop": session.queue_drop,
        "systemSent": session.system_sent,
        "abortedLastRun": session.aborted_last_run,
    }


def _usage(session: Session) -> dict[str, Any]:
    return {
        "inputTokens": session.input_tokens,
        "outputTokens": session.output_tokens,
        "totalTokens": session.total_tokens,
        "totalTokensFresh": (session.extra or {}).get("totalTokensFresh", True),
        "contextTokens": session.context_tokens,
    }


def _route(session: Session) -> dict[str, Any]:
    context = session.delivery_context or {}
    return {
        "deliveryContext": context or None,
        "lastChannel": context.get("channel"),
        "lastTo": context.get("to"),
        "lastAccountId": context.get("accountId"),
        "lastThreadId": context.get("threadId"),
    }


def _lineage(session: Session) -> dict[str, Any]:
    return {
        "spawnedBy": session.spawned_by,
        "parentSessionKey": session.parent_session_key,
        "spawnDepth": session.spawn_depth,
        "subagentRole": session.subagent_role,
        "subagentControlScope": session.subagent_control_scope,
        "spawnedWorkspaceDir": session.spawned_workspace_dir,
    }


def _run_summary(session: Session) -> dict[str, Any]:
    runtime = None
    if session.started_at and session.ended_at:
        runtime = int((session.ended_at - session.started_at).total_seconds() * 1000)
    return {
        "status": session.status,
        "startedAt": ms(session.started_at),
        "endedAt": ms(session.ended_at),
        "runtimeMs": runtime,
    }


def message_row(entry: TranscriptEntry) -> dict[str, Any]:
    """One transcript message as ``chat.history`` returns it, with ``__openclaw`` ids."""
    row = {
        "role": entry.role,
        "content": entry.content,
        "timestamp": ms(entry.created_at),
        "usage": entry.usage or None,
        "stopReason": entry.stop_reason or None,
        "model": entry.model or None,
        "provider": entry.provider or None,
        "idempotencyKey": entry.idempotency_key,
        "provenance": entry.provenance or None,
    }
    row = {name: value for name, value in row.items() if value is not None}
    row["__openclaw"] = {"id": entry.message_id, "seq": entry.seq, "runId": entry.run_id}
    return row


def run_row(run: Run) -> dict[str, Any]:
    """One run (REST ``/runs/<runId>``): state, input message, output, error, usage, timing."""
    row = {
        "runId": run.run_id, "sessionKey": run.session_key or None, "agentId": run.agent_id, "kind": run.kind,
        "status": run.status, "message": (run.input or {}).get("message"), "output": run.output or None,
        "error": run.error, "usage": run.usage or None, "attempts": run.attempts,
        "abortRequested": run.abort_requested, "parentRunId": run.parent_run_id,
        "createdAt": ms(run.created_at), "startedAt": ms(run.started_at), "endedAt": ms(run.ended_at),
        "durationMs": run.duration_ms,
    }  # fmt: skip
    return {name: value for name, value in row.items() if value is not None}

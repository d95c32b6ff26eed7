"""Listing, steering and killing a session's sub-agents (spec-b §2.7–§2.9).

The ``subagents`` tool, the ``/subagents`` slash command and the REST/RPC doors call
these. Results keep the tool's shapes (``{status: ok|done|accepted|forbidden|
rate_limited|error, …, text}``). A killed run never announces, and killing cascades to
every descendant; a steer restarts the child with the new message and the interrupted
run's (stale) output is never announced.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..models import Run, Session, SubagentRun
from ..subagent_selectors import subagent_children_latest, subagent_count_pending_descendants
from .announce import subagent_resume_waiting_parent
from .runs import RunNotActiveError, run_abort, run_enqueue
from .subagents import requester_key_of

STEER_MAX_CHARS = 4000
STEER_MIN_INTERVAL = timedelta(seconds=2)
RECENT_MINUTES_DEFAULT = 30
RECENT_MINUTES_MAX = 1440


class TargetError(Exception):
    """A target token that names no (or more than one) sub-agent."""


# --- who is asking, and which child they mean --------------------------------------------


def controller_key_for(caller_session_key: str) -> str:
    """The session whose children the caller controls: itself, or for a leaf sub-agent its
    parent (a leaf sees its siblings)."""
    key = requester_key_of(caller_session_key)
    row = Session.objects.filter(key=key).values("subagent_role", "spawned_by").first()
    if row and row["subagent_role"] == "leaf" and row["spawned_by"]:
        return row["spawned_by"]
    return key


def _children(controller_key: str) -> list[SubagentRun]:
    return subagent_children_latest(requester_session_key=controller_key)


def resolve_target(children: list[SubagentRun], token: str | None) -> SubagentRun:
    """A child by list index (``3`` / ``#3``), session key, label, label prefix or run id prefix."""
    token = (token or "").strip()
    if not token:
        raise TargetError("Missing subagent target.")
    if token.lstrip("#").isdigit():
        index = int(token.lstrip("#"))
        if not 1 <= index <= len(children):
            raise TargetError(f"Invalid subagent index: {token}")
        return children[index - 1]
    for match in (_by_key, _by_label, _by_label_prefix, _by_run_prefix):
        found = match(children, token)
        if found is not None:
            return found
    raise TargetError(f"Unknown subagent target: {token}")


def _one(rows: list[SubagentRun], ambiguous: str) -> SubagentRun | None:
    if len(rows) > 1:
        raise TargetError(ambiguous)
    return rows[0] if rows else None


def _by_key(children, token):
    return next((c for c in children if c.child_session_key == token), None)


def _by_label(children, token):
    rows = [c for c in children if c.label and c.label.lower() == token.lower()]
    return _one(rows, f"Ambiguous subagent label: {token}")


def _by_label_prefix(children, token):
    rows = [c for c in children if c.label and c.label.lower().startswith(token.lower())]
    return _one(rows, f"Ambiguous subagent label prefix: {token}")


def _by_run_prefix(children, token):
    rows = [c for c in children if c.run_id.startswith(token)]
    return _one(rows, f"Ambiguous subagent run id prefix: {token}")


# --- list / info -------------------------------------------------------------------------


def subagent_view(row: SubagentRun, index: int) -> dict[str, Any]:
    """One child as the ``list`` action shows it."""
    ended = row.ended_at
    runtime_ms = int(((ended or timezone.now()) - (row.started_at or row.created_at)).total_seconds() * 1000)
    session = Session.objects.filter(key=row.child_session_key).values("total_tokens").first()
    return {
        "index": index, "runId": row.run_id, "sessionKey": row.child_session_key, "label": row.label or None,
        "task": row.task, "status": _view_status(row), "runtime": _runtime_text(runtime_ms),
        "runtimeMs": runtime_ms, "model": row.model or None,
        "totalTokens": (session or {}).get("total_tokens") or (row.usage or {}).get("totalTokens") or 0,
        "startedAt": _ms(row.started_at or row.created_at), "endedAt": _ms(ended) if ended else None,
        "cleanup": row.cleanup, "followUp": row.is_follow_up, "announce": row.announce_state,
    }  # fmt: skip


def _view_status(row: SubagentRun) -> str:
    if subagent_count_pending_descendants(root_session_key=row.child_session_key):
        return "active"
    return row.status


def _runtime_text(ms: int) -> str:
    from ..announce_format import format_duration_short

    return format_duration_short(ms)


def _ms(value) -> int:
    return int(value.timestamp() * 1000)


def subagent_list(*, caller_session_key: str, recent_minutes: int | None = None) -> dict[str, Any]:
    """Active children and those that ended within ``recent_minutes`` (default 30)."""
    minutes = min(max(int(recent_minutes or RECENT_MINUTES_DEFAULT), 1), RECENT_MINUTES_MAX)
    controller = controller_key_for(caller_session_key)
    caller = requester_key_of(caller_session_key)
    since = timezone.now() - timedelta(minutes=minutes)
    views = [subagent_view(row, i) for i, row in enumerate(_children(controller), start=1)]
    active = [v for v in views if v["status"] in ("running", "active")]
    recent = [v for v in views if v not in active and v["endedAt"] and v["endedAt"] >= _ms(since)]
    return {
        "status": "ok", "action": "list", "requesterSessionKey": controller, "callerSessionKey": caller,
        "callerIsSubagent": ":subagent:" in caller, "total": len(active) + len(recent),
        "active": active, "recent": recent, "text": _list_text(active, recent),
    }  # fmt: skip


def _list_text(active: list[dict], recent: list[dict]) -> str:
    if not active and not recent:
        return "No sub-agents."
    lines = []
    for title, views in (("Active", active), ("Recent", recent)):
        if views:
            lines.append(f"{title}:")
            lines += [f"#{v['index']} {v['label'] or v['task'][:60]} — {v['status']} ({v['runtime']}, "
                      f"{v['totalTokens']} tokens) {v['sessionKey']}" for v in views]  # fmt: skip
    return "\n".join(lines)


def subagent_info(*, caller_session_key: str, target: str) -> dict[str, Any]:
    """Everything about one child (``/subagents info``)."""
    children = _children(controller_key_for(caller_session_key))
    try:
        row = resolve_target(children, target)
    except TargetError as exc:
        return {"status": "error", "action": "info", "error": str(exc)}
    view = subagent_view(row, children.index(row) + 1)
    view.update(outcome=row.outcome or None, depth=row.depth, role=row.role, steerCount=row.steer_count,
                result=row.frozen_result)  # fmt: skip
    text = "\n".join(f"{k}: {v}" for k, v in view.items() if v not in (None, "", []))
    return {"status": "ok", "action": "info", "subagent": view, "text": text}


# --- kill ------------------------------------------------------------------------------------


def subagent_kill(*, caller_session_key: str, target: str) -> dict[str, Any]:
    """Kill one child (or ``all`` / ``*``) and, recursively, every descendant of it."""
    children = _children(controller_key_for(caller_session_key))
    if (target or "").strip() in ("all", "*"):
        killed = [row for row in children if _terminate_tree(row)]
        if killed:
            subagent_resume_waiting_parent(session_key=killed[0].requester_session_key)
        labels = [row.label or row.child_session_key for row in killed]
        text = f"Killed {len(killed)} sub-agent(s)." if killed else "No running sub-agents to kill."
        return {"status": "ok", "action": "kill", "killed": len(killed), "labels": labels, "text": text}
    try:
        row = resolve_target(children, target)
    except TargetError as exc:
        return {"status": "error", "action": "kill", "error": str(exc)}
    name = row.label or row.child_session_key
    if row.status != SubagentRun.Status.RUNNING and not subagent_count_pending_descendants(
        root_session_key=row.child_session_key
    ):
        return {"status": "done", "action": "kill", "sessionKey": row.child_session_key, "text": f"{name} is already finished."}
    _terminate(row)
    cascade = _kill_descendants(row.child_session_key)
    subagent_resume_waiting_parent(session_key=row.requester_session_key)
    return {
        "status": "ok", "action": "kill", "target": target, "runId": row.run_id, "sessionKey": row.child_session_key,
        "label": row.label or None, "cascadeKilled": cascade, "text": f"Killed {name}" + (
            f" and {cascade} descendant(s)." if cascade else "."),
    }  # fmt: skip


def _terminate_tree(row: SubagentRun) -> bool:
    # The row first: a parent silenced before its children can never be resumed to announce.
    killed = _terminate(row)
    return _kill_descendants(row.child_session_key) > 0 or killed


def _kill_descendants(session_key: str) -> int:
    count = 0
    for child in subagent_children_latest(requester_session_key=session_key):
        count += _terminate(child)
        count += _kill_descendants(child.child_session_key)
    return count


def subagents_stop_for_requester(*, session_key: str) -> list[str]:
    """``/stop`` in a requester's chat stops every sub-agent it spawned that is still
    running (or still waiting on its own descendants), and, recursively, their
    descendants (spec-b §2.8). Killed runs never announce. Returns the child session
    keys whose rows were killed, parents before their descendants."""
    killed: list[str] = []

    def stop_tree(session_key: str) -> None:
        for row in subagent_children_latest(requester_session_key=session_key):
            if _terminate(row):
                killed.append(row.child_session_key)
            stop_tree(row.child_session_key)

    requester_key = requester_key_of(session_key)
    stop_tree(requester_key)
    if killed:
        subagent_resume_waiting_parent(session_key=requester_key)
    return killed


def subagent_terminate(*, run_id: str, reason: str = "killed") -> bool:
    """Mark one registry row killed (never announces) and abort the child's turns."""
    row = SubagentRun.objects.filter(run_id=run_id).first()
    return _terminate(row, reason=reason) if row else False


def _terminate(row: SubagentRun, *, reason: str = "killed") -> bool:
    now = timezone.now()
    with transaction.atomic():
        updated = SubagentRun.objects.filter(pk=row.pk, status=SubagentRun.Status.RUNNING).update(
            status=SubagentRun.Status.KILLED, ended_at=now, outcome={"status": "error", "error": reason},
            ended_reason="killed", suppress_announce_reason="killed", cleanup_handled=True,
            cleanup_completed_at=now, announce_state=SubagentRun.AnnounceState.SKIPPED, next_announce_at=None,
        )  # fmt: skip
        # A row already ended but still waiting to announce (for its descendants) is killed too.
        silenced = SubagentRun.objects.filter(pk=row.pk, cleanup_handled=False).update(
            status=SubagentRun.Status.KILLED, ended_reason="killed", suppress_announce_reason="killed",
            cleanup_handled=True, cleanup_completed_at=now, announce_state=SubagentRun.AnnounceState.SKIPPED,
            next_announce_at=None,
        )  # fmt: skip
        _abort_child_turns(row.child_session_key, reason=f"subagent {reason}")
        if updated:
            Session.objects.filter(key=row.child_session_key).update(aborted_last_run=True, status="killed")
    row.refresh_from_db()
    return bool(updated or silenced)


def _abort_child_turns(session_key: str, *, reason: str) -> None:
    for run in Run.objects.filter(session_key=session_key).active():
        try:
            run_abort(run=run, reason=reason)
        except RunNotActiveError:
            pass


# --- steer -----------------------------------------------------------------------------------


def subagent_steer(*, caller_session_key: str, target: str, message: str) -> dict[str, Any]:
    """Restart a running child with ``message``; its interrupted output is never announced."""
    caller = requester_key_of(caller_session_key)
    message = (message or "").strip()
    if not message:
        return {"status": "error", "action": "steer", "error": "Missing steer message."}
    if len(message) > STEER_MAX_CHARS:
        return {"status": "error", "action": "steer",
                "error": f"Message too long ({len(message)} chars; max {STEER_MAX_CHARS})."}  # fmt: skip
    try:
        row = resolve_target(_children(controller_key_for(caller_session_key)), target)
    except TargetError as exc:
        return {"status": "error", "action": "steer", "error": str(exc)}
    return _steer(row, caller=caller, message=message)


def _steer(row: SubagentRun, *, caller: str, message: str) -> dict[str, Any]:
    name = row.label or row.child_session_key
    if row.child_session_key == caller:
        return {"status": "forbidden", "action": "steer", "error": "Subagents cannot steer themselves."}
    if row.status != SubagentRun.Status.RUNNING:
        return {"status": "done", "action": "steer", "sessionKey": row.child_session_key,
                "text": f"{name} is already finished."}  # fmt: skip
    if row.last_steer_at and timezone.now() - row.last_steer_at < STEER_MIN_INTERVAL:
        return {"status": "rate_limited", "action": "steer", "sessionKey": row.child_session_key,
                "error": f"Steer rate limit: wait a moment before steering {name} again."}  # fmt: skip
    new_run = _restart(row, message=message)
    session_id = Session.objects.filter(key=row.child_session_key).values_list("session_id", flat=True).first()
    return {
        "status": "accepted", "action": "steer", "runId": new_run.run_id, "sessionKey": row.child_session_key,
        "sessionId": session_id, "mode": "restart", "label": row.label or None, "text": f"Steered {name}.",
    }  # fmt: skip


@transaction.atomic
def _restart(row: SubagentRun, *, message: str) -> Run:
    """Suppress the old row, abort its turn, queue the steer run and register it."""
    now = timezone.now()
    SubagentRun.objects.filter(pk=row.pk).update(
        suppress_announce_reason="steer-restart", ended_reason="steer-restart", cleanup_handled=True,
        cleanup_completed_at=now, announce_state=SubagentRun.AnnounceState.SKIPPED,
    )  # fmt: skip
    _abort_child_turns(row.child_session_key, reason="steered")
    first = Run.objects.filter(run_id=row.run_id).values_list("input", flat=True).first() or {}
    run_input = {"message": message, "lane": "subagent", "deliver": False, "steer": True}
    if first.get("extraSystemPrompt"):
        run_input["extraSystemPrompt"] = first["extraSystemPrompt"]
    child = Session.objects.get(key=row.child_session_key)
    run, _ = run_enqueue(
        session=child, agent_id=child.agent_id, kind=Run.Kind.SUBAGENT, run_id=str(uuid.uuid4()), input=run_input,
        timeout_s=row.run_timeout_s, source_session_key=row.requester_session_key, parent_run_id=row.requester_run_id,
    )  # fmt: skip
    _copy_row(row, run_id=run.run_id, now=now)
    return run


def _copy_row(row: SubagentRun, *, run_id: str, now) -> SubagentRun:
    skip = {"id", "run_id", "created_at", "status", "outcome", "frozen_result", "announce_state", "announce_attempts",
            "announce_delivery_id", "suppress_announce_reason", "cleanup_handled", "ended_at", "ended_reason",
            "next_announce_at", "last_announce_error", "cleanup_completed_at", "wake_on_descendant_settle",
            "steered_from_run_id", "steer_count", "last_steer_at", "started_at", "usage"}  # fmt: skip
    fields = {f.name: getattr(row, f.name) for f in SubagentRun._meta.concrete_fields if f.name not in skip}
    return SubagentRun.objects.create(
        **fields, run_id=run_id, steered_from_run_id=row.run_id, steer_count=row.steer_count + 1,
        last_steer_at=now, started_at=now,
    )


# --- /subagents slash command ----------------------------------------------------------------

SUBAGENTS_USAGE = "Usage: /subagents list | kill <#|label|all> | steer <#|label> <message> | info <#|label>"


def subagents_command(*, caller_session_key: str, args: str) -> str:
    """The text reply of ``/subagents list|kill|steer|info …`` (same services as the tool)."""
    words = (args or "").split(maxsplit=2)
    action = words[0].lower() if words else "list"
    target = words[1] if len(words) > 1 else ""
    if action == "list":
        return subagent_list(caller_session_key=caller_session_key)["text"]
    if action == "kill":
        result = subagent_kill(caller_session_key=caller_session_key, target=target)
    elif action == "steer":
        message = words[2] if len(words) > 2 else ""
        result = subagent_steer(caller_session_key=caller_session_key, target=target, message=message)
    elif action == "info":
        result = subagent_info(caller_session_key=caller_session_key, target=target)
    else:
        return SUBAGENTS_USAGE
    return result.get("text") or result.get("error") or result["status"]

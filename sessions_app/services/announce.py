"""The announce pipeline: a finished child run's result reaches its requester exactly once.

When a ``subagent`` run ends (run-finished hook), :func:`subagent_run_finalize` freezes
its outcome and final reply on the ``SubagentRun`` row, then :func:`subagent_announce`
runs the flow of spec-b §3.2:

1. suppressed rows (killed, steer-restarted) never announce;
2. a child with pending descendants waits (``wake_on_descendant_settle``) and is resumed
   when its last descendant's announce is handled; with findings it is first woken with
   them (a ``:wake`` run) and announces after that run;
3. a silent reply (``NO_REPLY`` / ``ANNOUNCE_SKIP``) is counted as delivered, nothing sent;
4. otherwise the ``task_completion`` event is rendered and handed to the requester as a
   ``Delivery`` with idempotency key ``announce:v1:<childKey>:<childRunId>`` (unique in
   the database: a retry, a second engine or a restart never announces twice), placed
   direct or through the requester's queue mode (``services.announce_queue``, §3.7);
5. transient failures are retried (5 s, 10 s, 20 s, then backoff up to 30 s with jitter,
   at most 8 attempts, 45 min expiry); on give-up the requester gets a visible system
   event "result could not be delivered", never a silent loss;
6. afterwards ``cleanup: delete`` deletes the child session, ``keep`` keeps it and patches
   its label (seed 003: the announce names the child key and how to follow up).

:func:`subagent_sweep` (maintenance) finishes what a crash or restart interrupted.
"""

from __future__ import annotations

import logging
import random
import re
from datetime import datetime, timedelta

from django.db import DatabaseError, transaction
from django.utils import timezone

from cron_app.maintenance import maintenance_sweep
from openclaw_site.errors import GatewayError

from .. import keys
from ..announce_format import (
    TaskCompletionEvent,
    cap_frozen_result,
    child_findings,
    descendant_wake_message,
    follow_up_hint,
    is_silent_reply,
    render_internal_events,
    reply_instruction,
    stats_line,
    status_label,
    strip_silent_tokens,
)
from ..models import Delivery, Run, Session, SubagentRun, TranscriptEntry
from ..subagent_selectors import (
    subagent_children_latest,
    subagent_count_pending_descendants,
    subagent_latest_for_child,
    subagent_runs_due,
    subagent_spawn_depth,
)
from .run_hooks import on_run_finished

logger = logging.getLogger(__name__)

IN_CALL_RETRY_DELAYS_S = (5, 10, 20)
MAX_ANNOUNCE_RETRY_COUNT = 5
MAX_ANNOUNCE_ATTEMPTS = len(IN_CALL_RETRY_DELAYS_S) + MAX_ANNOUNCE_RETRY_COUNT
ANNOUNCE_EXPIRY = timedelta(minutes=10)
ANNOUNCE_COMPLETION_HARD_EXPIRY = timedelta(minutes=45)
WAKE_SUFFIX = ":wake"
UNDELIVERED_NOTICE = "⚠️ Sub-agent result could not be delivered: {task} ({child}) — {reason}"
_PERMANENT_RE = re.compile(
    r"unsupported channel|unknown channel|chat not found|user not found|bot was blocked by the user|"
    r"forbidden: bot was kicked|recipient is not a valid|outbound not configured for channel|"
    r"send blocked by session policy",
    re.IGNORECASE,
)
ANNOUNCE_OUTCOMES = ("noop", "skipped", "deferred", "woken", "announced", "retry", "failed")


def announce_id(child_session_key: str, child_run_id: str) -> str:
    return f"v1:{child_session_key}:{child_run_id}"


def announce_idempotency_key(child_session_key: str, child_run_id: str) -> str:
    """``announce:v1:<childSessionKey>:<childRunId>`` (spec-b §3.8)."""
    return f"announce:{announce_id(child_session_key, child_run_id)}"


@on_run_finished(Run.Kind.SUBAGENT)
def subagent_run_finished(run: Run) -> None:
    """Run-finished hook of ``subagent`` runs: freeze the result, then announce it."""
    if subagent_run_finalize(run_id=run.run_id) is not None:
        subagent_announce(run_id=run.run_id)


# --- freezing the outcome ----------------------------------------------------------------


def subagent_run_finalize(*, run_id: str) -> SubagentRun | None:
    """Record the end of a child run on its registry row (once): outcome from the run's
    status (a runtime signal), the frozen final reply (capped at 100 KB; none for a failed
    run), usage and timing. Returns the row, or None for an unregistered run."""
    with transaction.atomic():
        row = SubagentRun.objects.select_for_update().filter(run_id=run_id).first()
        if row is None or row.status != SubagentRun.Status.RUNNING:
            return row
        run = Run.objects.filter(run_id=run_id).first()
        if run is not None and not run.is_terminal:
            return row
        _apply_outcome(row, run)
        row.save()
    return row


def _apply_outcome(row: SubagentRun, run: Run | None) -> None:
    status, error = _outcome_of(run)
    row.status = status
    row.outcome = {"status": status, **({"error": error} if error else {})}
    row.ended_at = (run.ended_at if run else None) or timezone.now()
    row.started_at = row.started_at or (run.started_at if run else None)
    row.ended_reason = row.ended_reason or {"ok": "complete"}.get(status, status)
    row.frozen_result = None if status == SubagentRun.Status.ERROR else cap_frozen_result(_capture_reply(run))
    row.usage = (run.usage if run else None) or {}
    if row.suppress_announce_reason:
        _mark_handled(row, SubagentRun.AnnounceState.SKIPPED)


def _outcome_of(run: Run | None) -> tuple[str, str | None]:
    if run is None:
        return SubagentRun.Status.ERROR, "orphaned subagent run (missing-run)"
    if run.status == Run.Status.OK:
        return SubagentRun.Status.OK, None
    if run.status == Run.Status.TIMEOUT:
        return SubagentRun.Status.TIMEOUT, None
    message = (run.error or {}).get("message") if isinstance(run.error, dict) else None
    if run.status == Run.Status.ABORTED:
        return SubagentRun.Status.ERROR, message or "subagent run terminated"
    return SubagentRun.Status.ERROR, message or "unknown error"


def _capture_reply(run: Run | None) -> str | None:
    """The child's final reply: the run's output text, else its newest assistant text,
    else its newest tool result text."""
    if run is None:
        return None
    text = (run.output or {}).get("text") if isinstance(run.output, dict) else None
    if isinstance(text, str) and text.strip():
        return text
    entries = TranscriptEntry.objects.filter(run_id=run.run_id).order_by("-seq")
    for role in (TranscriptEntry.Role.ASSISTANT, TranscriptEntry.Role.TOOL):
        for entry in entries.filter(role=role)[:20]:
            if entry.text.strip():
                return entry.text
    return None


# --- the flow ------------------------------------------------------------------------------


def subagent_announce(*, run_id: str, now: datetime | None = None) -> str:
    """Run the announce flow for one ended child run; returns one of ``ANNOUNCE_OUTCOMES``.

    Idempotent: a handled row is a no-op and the delivery's key is unique.
    """
    now = now or timezone.now()
    with transaction.atomic():
        row = SubagentRun.objects.select_for_update().filter(run_id=run_id).first()
        if row is None or row.cleanup_handled or row.status == SubagentRun.Status.RUNNING:
            return "noop"
        outcome = _flow(row, now)
    if row.cleanup_handled:
        _after_handled(row)
    return outcome


def _flow(row: SubagentRun, now: datetime) -> str:
    if row.suppress_announce_reason:
        _mark_handled(row, SubagentRun.AnnounceState.SKIPPED)
        row.save()
        return "skipped"
    if row.announce_attempts and _expired(row, now):
        _give_up(row, "expiry: the requester did not take the result in time")
        return "failed"
    if subagent_count_pending_descendants(root_session_key=row.child_session_key):
        if not row.wake_on_descendant_settle:
            SubagentRun.objects.filter(pk=row.pk).update(wake_on_descendant_settle=True)
        return "deferred"
    findings = _findings(row)
    if findings and row.wake_on_descendant_settle and not row.run_id.endswith(WAKE_SUFFIX) and _wake(row, findings):
        return "woken"
    reply = findings or _reply_text(row)
    if reply is None:
        _mark_handled(row, SubagentRun.AnnounceState.SKIPPED)
        row.save()
        return "skipped"
    return _deliver(row, reply, now)


def _expired(row: SubagentRun, now: datetime) -> bool:
    limit = ANNOUNCE_COMPLETION_HARD_EXPIRY if row.expects_completion_message else ANNOUNCE_EXPIRY
    return bool(row.ended_at and now - row.ended_at > limit)


def _reply_text(row: SubagentRun) -> str | None:
    """The text to announce; None when the child chose silence (and no fallback exists)."""
    fallback = (row.fallback_frozen_result or "").strip() or None
    if fallback and is_silent_reply(fallback):
        fallback = None
    reply = (row.frozen_result or "").strip() or fallback or ""
    if is_silent_reply(reply):
        return fallback
    return strip_silent_tokens(reply) if re.search(r"\bNO_REPLY\b", reply, re.IGNORECASE) else reply


def _findings(row: SubagentRun) -> str:
    """The "child completion results" of the row's direct children in its run window."""
    children = subagent_children_latest(requester_session_key=row.child_session_key, requester_run_id=row.run_id)
    return child_findings([
        {"title": c.label or c.task or c.child_session_key, "status": _describe(c), "result": c.frozen_result}
        for c in children
    ])  # fmt: skip


def _describe(row: SubagentRun) -> str:
    error = (row.outcome or {}).get("error")
    if row.status == SubagentRun.Status.ERROR or row.status == SubagentRun.Status.KILLED:
        return f"error: {error}" if error else "error"
    return row.status if row.status in ("ok", "timeout") else "unknown"


# --- descendant wake -------------------------------------------------------------------------


def _wake(row: SubagentRun, findings: str) -> bool:
    """Wake the orchestrator with its children's findings; its next completion announces."""
    from .runs import run_enqueue

    child = Session.objects.filter(key=row.child_session_key).first()
    if child is None:
        return False
    base = row.run_id
    while base.endswith(WAKE_SUFFIX):
        base = base[: -len(WAKE_SUFFIX)]
    first = Run.objects.filter(run_id=base).values_list("input", flat=True).first() or {}
    run_input = {"message": descendant_wake_message(task_label=row.label or row.task, findings=findings),
                 "lane": "subagent", "deliver": False, "wake": True}  # fmt: skip
    if first.get("extraSystemPrompt"):
        run_input["extraSystemPrompt"] = first["extraSystemPrompt"]
    wake_run, _ = run_enqueue(
        session=child, agent_id=child.agent_id, kind=Run.Kind.SUBAGENT, run_id=f"{base}{WAKE_SUFFIX}",
        input=run_input, timeout_s=row.run_timeout_s, source_session_key=row.child_session_key,
    )  # fmt: skip
    _replace_row(row, run_id=wake_run.run_id)
    return True


def _replace_row(row: SubagentRun, *, run_id: str) -> None:
    """The wake run takes over the row (``replaceSubagentRunAfterSteer`` with the old
    reply kept as the fallback); the old row is handled."""
    keep = {"child_session_key", "requester_session_key", "requester_run_id", "requester_display_key",
            "requester_origin", "task", "label", "agent_id", "model", "cleanup", "mode", "depth", "role",
            "run_timeout_s", "expects_completion_message", "resumable", "is_follow_up"}  # fmt: skip
    fields = {name: getattr(row, name) for name in keep}
    SubagentRun.objects.get_or_create(run_id=run_id, defaults={
        **fields, "fallback_frozen_result": row.frozen_result, "started_at": timezone.now(),
        "steered_from_run_id": row.run_id,
    })  # fmt: skip
    row.ended_reason = "descendant-wake"
    _mark_handled(row, SubagentRun.AnnounceState.SKIPPED)
    row.save()


# --- delivery ------------------------------------------------------------------------------


def _deliver(row: SubagentRun, reply: str, now: datetime) -> str:
    from .announce_queue import DROPPED, Announce, announce_place

    target_key, target_run_id = _announce_target(row)
    event = _completion_event(row, reply, requester_key=target_key)
    payload = {
        "text": render_internal_events([event]), "internalEvents": [event.as_dict()],
        "provenance": {"kind": "inter_session", "sourceSessionKey": row.child_session_key,
                       "sourceChannel": "internal", "sourceTool": "subagent_announce"},
        "childRunId": row.run_id, "expectsCompletionMessage": row.expects_completion_message,
    }  # fmt: skip
    announce = Announce(
        source_session_key=row.child_session_key, source_run_id=row.run_id, target_session_key=target_key,
        target_run_id=target_run_id, payload=payload, summary_line=f"{event.task_label}: {event.status_label}",
        idempotency_key=announce_idempotency_key(row.child_session_key, row.run_id),
        expects_completion_message=row.expects_completion_message,
    )  # fmt: skip
    row.announce_attempts += 1
    try:
        with transaction.atomic():
            placed = announce_place(announce, is_permanent=_is_permanent)
    except Exception as exc:  # noqa: BLE001 - classified below; the row keeps the error
        return _delivery_failed(row, exc, now)
    _settle_dropped(placed.dropped)
    if placed.path == DROPPED:
        _give_up(row, placed.reason)
        return "failed"
    row.announce_delivery_id = placed.delivery.delivery_id
    row.announce_path = placed.path
    _mark_handled(row, SubagentRun.AnnounceState.ANNOUNCED)
    row.save()
    return "announced"


def _settle_dropped(dropped) -> None:
    """Announces dropped from a full queue: a summarized one reached the requester as its
    summary line (``dropped``); any other is given up with the visible notice."""
    for delivery, reason, summarized in dropped:
        row = SubagentRun.objects.filter(announce_delivery_id=delivery.delivery_id).first()
        if row is None:
            continue
        if summarized:
            row.last_announce_error = reason
            row.announce_state = SubagentRun.AnnounceState.DROPPED
            row.save(update_fields=["last_announce_error", "announce_state"])
        else:
            _give_up(row, reason)


def _announce_target(row: SubagentRun) -> tuple[str, str | None]:
    """The requester, or (its session gone) the nearest live ancestor (spec-b §3.2 step 12)."""
    key, run_id, seen = row.requester_session_key, row.requester_run_id, set()
    while key not in seen and not Session.objects.filter(key=key).exists():
        seen.add(key)
        parent = subagent_latest_for_child(child_session_key=key)
        if parent is None:
            break
        key, run_id = parent.requester_session_key, None
    return key, run_id


def _completion_event(row: SubagentRun, reply: str, *, requester_key: str) -> TaskCompletionEvent:
    child = Session.objects.filter(key=row.child_session_key).first()
    status = row.status if row.status in ("ok", "timeout", "error") else "unknown"
    internal = subagent_spawn_depth(session_key=requester_key) >= 1 or keys.is_cron_session_key(requester_key)
    return TaskCompletionEvent(
        child_session_key=row.child_session_key, child_session_id=child.session_id if child else "unknown",
        task_label=row.label or row.task or "task", status=status,
        status_label=status_label(status, (row.outcome or {}).get("error")), result=reply or "(no output)",
        reply_instruction=reply_instruction(requester_is_internal=internal,
                                            expects_completion_message=row.expects_completion_message,
                                            announce_type="subagent task"),
        stats_line=_stats(row, child),
        follow_up_hint=follow_up_hint(row.child_session_key) if _offers_follow_up(row, child) else "",
    )  # fmt: skip


def _offers_follow_up(row: SubagentRun, child: Session | None) -> bool:
    return child is not None and row.cleanup == "keep" and not row.is_follow_up


def _stats(row: SubagentRun, child: Session | None) -> str:
    run = Run.objects.filter(run_id=row.run_id).first()
    started = (run.started_at if run else None) or row.started_at
    ended = (run.ended_at if run else None) or row.ended_at
    runtime_ms = int((ended - started).total_seconds() * 1000) if started and ended else None
    return stats_line(
        runtime_ms=runtime_ms, input_tokens=child.input_tokens if child else 0,
        output_tokens=child.output_tokens if child else 0, total_tokens=child.total_tokens if child else 0,
    )  # fmt: skip


def _delivery_failed(row: SubagentRun, exc: Exception, now: datetime) -> str:
    reason = str(exc) or type(exc).__name__
    logger.warning("announce of %s failed (attempt %s): %s", row.run_id, row.announce_attempts, reason)
    if _is_permanent(exc) or row.announce_attempts >= MAX_ANNOUNCE_ATTEMPTS:
        _give_up(row, reason if _is_permanent(exc) else f"retry-limit: {reason}")
        return "failed"
    row.last_announce_error = reason
    row.next_announce_at = now + timedelta(seconds=_retry_delay(row.announce_attempts))
    row.save(update_fields=["announce_attempts", "last_announce_error", "next_announce_at"])
    return "retry"


def _is_permanent(exc: Exception) -> bool:
    if _PERMANENT_RE.search(str(exc)):
        return True
    if isinstance(exc, DatabaseError):
        return False
    return isinstance(exc, GatewayError) and exc.code != "UNAVAILABLE" and not exc.retryable


def _retry_delay(attempt: int) -> float:
    """5, 10, 20 s, then ``min(2^(k-1), 30)`` s with jitter in ``[d/2, d]``."""
    if attempt <= len(IN_CALL_RETRY_DELAYS_S):
        return IN_CALL_RETRY_DELAYS_S[attempt - 1]
    delay = min(2 ** (attempt - len(IN_CALL_RETRY_DELAYS_S) - 1), 30)
    return random.uniform(delay / 2, delay)


def _give_up(row: SubagentRun, reason: str) -> None:
    """Stop retrying and tell the requester, visibly; the child session is kept."""
    from .system_events import system_event_enqueue

    target_key, _ = _announce_target(row)
    text = UNDELIVERED_NOTICE.format(task=row.label or row.task[:80], child=row.child_session_key, reason=reason)
    system_event_enqueue(
        session_key=target_key, agent_id=keys.resolve_agent_id_from_session_key(target_key), text=text,
        context_key=f"subagent-announce:{row.run_id}", origin="subagent_announce",
    )  # fmt: skip
    row.last_announce_error = reason
    row.cleanup = "keep"  # the result still lives in the child's transcript
    _mark_handled(row, SubagentRun.AnnounceState.FAILED)
    row.save()


def _mark_handled(row: SubagentRun, state: str) -> None:
    row.announce_state = state
    row.cleanup_handled = True
    row.cleanup_completed_at = timezone.now()
    row.next_announce_at = None


# --- after the announce ----------------------------------------------------------------------


def _after_handled(row: SubagentRun) -> None:
    """Child cleanup, then resume an ancestor that waited for this descendant."""
    if row.ended_reason != "descendant-wake" and not row.suppress_announce_reason:
        _cleanup_child(row)
    subagent_resume_waiting_parent(session_key=row.requester_session_key)


def _cleanup_child(row: SubagentRun) -> None:
    from .sessions import session_delete, session_patch

    latest = subagent_latest_for_child(child_session_key=row.child_session_key)
    if latest is not None and latest.pk != row.pk and not latest.cleanup_handled:
        return  # a newer run of the child (follow-up, steer) is in flight
    try:
        if row.cleanup == "delete":
            session_delete(key=row.child_session_key)
        elif row.label:
            session_patch(key=row.child_session_key, changes={"label": row.label})
    except (GatewayError, DatabaseError) as exc:  # best effort, like upstream
        logger.info("cleanup of %s after announce skipped: %s", row.child_session_key, exc)


def subagent_resume_waiting_parent(*, session_key: str) -> None:
    """Re-run the announce of a sub-agent that waited for its descendants (if it still does,
    the flow defers again)."""
    parent = subagent_latest_for_child(child_session_key=session_key)
    if parent is not None and parent.status != SubagentRun.Status.RUNNING and not parent.cleanup_handled:
        subagent_announce(run_id=parent.run_id)


# --- maintenance -----------------------------------------------------------------------------


def subagent_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Finish interrupted work: unended rows whose run ended (a hook lost to a crash or
    restart), announces whose retry is due, and announces whose delivery later failed.
    Returns counts by outcome."""
    now = now or timezone.now()
    counts = dict.fromkeys(ANNOUNCE_OUTCOMES, 0)
    for row in subagent_runs_due(now=now):
        if row.status == SubagentRun.Status.RUNNING and subagent_run_finalize(run_id=row.run_id) is None:
            continue
        counts[subagent_announce(run_id=row.run_id, now=now)] += 1
    counts["undelivered"] = _notify_failed_deliveries()
    return counts


@maintenance_sweep("subagents.announce")
def _maintenance(now: datetime) -> int:
    counts = subagent_sweep(now=now)
    return counts["announced"] + counts["woken"] + counts["failed"] + counts["undelivered"]


def _notify_failed_deliveries() -> int:
    """Announces whose Delivery ended ``failed``/``expired``: tell the requester once."""
    failed_ids = Delivery.objects.filter(
        kind=Delivery.Kind.ANNOUNCE, state__in=(Delivery.State.FAILED, Delivery.State.EXPIRED)
    ).values("delivery_id")
    rows = SubagentRun.objects.filter(
        announce_state=SubagentRun.AnnounceState.ANNOUNCED, announce_delivery_id__in=failed_ids
    )
    count = 0
    for row in rows:
        with transaction.atomic():
            delivery = Delivery.objects.get(delivery_id=row.announce_delivery_id)
            _give_up(row, delivery.last_error or delivery.state)
        count += 1
    return count

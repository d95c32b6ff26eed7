"""Firing cron jobs: each scheduled slot exactly once, whatever the number of clusters.

:func:`cron_tick` finds enabled jobs whose ``next_run_at`` has come and claims a slot in
one transaction: a conditional update moves ``next_run_at`` on and sets ``running_at``
(a job never runs twice at once), and a ``CronRun`` row is inserted for the slot, unique
per (job, slot) — the insert that wins runs, an ``IntegrityError`` loses. Slots missed
during downtime follow the job's ``catchUp``: ``once`` (OpenClaw's behaviour) runs the
latest and records the others ``missed``, ``skip`` records them all (a slot less than
the grace late still runs), ``all`` runs every one, oldest first.

Main jobs queue their text as a ``cron:<jobId>`` system event and wake per ``wakeMode``;
isolated jobs queue an agent turn in a fresh ``agent:<a>:cron:<jobId>:run:<uuid>``
session and finish when that run does (``hooks.py``). Results follow spec-a §5.3:
backoff after errors, one-shot jobs disabled or deleted, announce/webhook delivery.
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from openclaw_site.config import get_config
from openclaw_site.errors import GatewayError
from sessions_app import keys
from sessions_app.models import Run
from sessions_app.services.runs import run_abort, run_enqueue
from sessions_app.services.sessions import session_ensure

from ..models import CronJob, CronRun, SchedulerState
from ..schedules import due_slots, next_slot, zone
from ..serializers import ms
from .heartbeats import heartbeat_request, user_timezone
from .jobs import publish_cron_event
from .wake import system_event_add

logger = logging.getLogger(__name__)

BACKOFF_S = (30, 60, 300, 900, 3600)
DEFAULT_TIMEOUT_S = 600
TIMEOUT_GRACE = timedelta(seconds=30)
CRON_ANTI_SPIN = timedelta(seconds=2)
MAX_SLOTS_PER_TICK = 1000
BUSY_REASONS = frozenset({"requests-in-flight", "cron-in-progress", "lanes-busy"})
TIMED_OUT = "cron: job execution timed out"


def cron_enabled() -> bool:
    """``cron.enabled`` and not ``OPENCLAW_SKIP_CRON=1`` (the RPCs still edit jobs)."""
    return bool(get_config().cron.get("enabled", True)) and os.environ.get("OPENCLAW_SKIP_CRON") != "1"


def _missed_grace() -> timedelta:
    return timedelta(seconds=float(getattr(settings, "OPENCLAW_CRON_MISSED_GRACE_S", 120)))


def job_timeout_s(job: CronJob | None) -> int:
    """``payload.timeoutSeconds`` (≤ 0 = none) for agent turns, else 10 minutes."""
    value = (job.payload or {}).get("timeoutSeconds") if job else None
    if job is None or job.session_target != CronJob.SessionTarget.ISOLATED or value is None:
        return DEFAULT_TIMEOUT_S
    return max(0, int(value))


# --- the tick ---------------------------------------------------------------------------


def cron_tick(*, now: datetime | None = None) -> list[CronRun]:
    """Fire every due slot once; returns the runs this call started."""
    now = now or timezone.now()
    if not cron_enabled():
        return []
    cron_timeouts_sweep(now=now)
    due = CronJob.objects.filter(enabled=True, next_run_at__lte=now, running_at__isnull=True)
    fired: list[CronRun] = []
    for job_pk in list(due.values_list("pk", flat=True)):
        fired += _fire_due(job_pk, now)
    return fired


def _fire_due(job_pk: int, now: datetime) -> list[CronRun]:
    fired = []
    for _ in range(MAX_SLOTS_PER_TICK):
        job = CronJob.objects.filter(pk=job_pk, enabled=True, next_run_at__lte=now, running_at__isnull=True).first()
        run = _claim_due(job, now) if job else None
        if run is None:
            break
        fired.append(run)
        _execute(job, run)
    return fired


def _plan(job: CronJob, now: datetime) -> tuple[list[datetime], datetime | None, datetime | None]:
    """(slots to record missed, the slot to run, the next run time) under ``catchUp``."""
    slots = due_slots(
        schedule=job.schedule, first=job.next_run_at, now=now, job_id=job.job_id, created_at=job.created_at
    ) or [job.next_run_at]
    latest = slots[-1]
    if job.catch_up == CronJob.CatchUp.ALL:
        return [], slots[0], _next(job, slots[0])
    upcoming = _next(job, max(latest, now))
    if job.catch_up == CronJob.CatchUp.SKIP and now - latest > _missed_grace():
        return slots, None, upcoming
    return slots[:-1], latest, upcoming


def _next(job: CronJob, after: datetime) -> datetime | None:
    return next_slot(schedule=job.schedule, after=after, job_id=job.job_id, created_at=job.created_at)


def _lock_claims() -> None:
    # One lock row serialises claims, so maxConcurrentRuns holds across clusters.
    SchedulerState.objects.select_for_update().get_or_create(pk=1)


def _claim_due(job: CronJob, now: datetime) -> CronRun | None:
    missed, slot, upcoming = _plan(job, now)
    with transaction.atomic():
        _lock_claims()
        if slot is not None and _at_capacity():
            return None
        changes: dict[str, Any] = {"next_run_at": upcoming, "running_at": now if slot else None, "updated_at": now}
        if upcoming is None and slot is None:
            changes["enabled"] = False  # a one-shot job whose only slot was missed
        claimed = CronJob.objects.filter(pk=job.pk, next_run_at=job.next_run_at, running_at__isnull=True)
        if not claimed.update(**changes):
            return None
        _record_missed(job, missed, now)
        if slot is None:
            publish_cron_event(job.job_id, "updated", nextRunAtMs=ms(upcoming))
            return None
        run = insert_run(job, slot)
        if run is None:
            CronJob.objects.filter(pk=job.pk).update(running_at=None)
        return run


def _at_capacity() -> bool:
    limit = int(get_config().cron.get("maxConcurrentRuns", 1) or 1)
    return CronJob.objects.filter(running_at__isnull=False).count() >= limit


def insert_run(job: CronJob, slot: datetime, *, manual: bool = False) -> CronRun | None:
    """The run row of one slot; None when that slot already has one (another claim won)."""
    try:
        with transaction.atomic():
            return CronRun.objects.create(
                job=job, job_uid=job.job_id, job_name=job.name, scheduled_for=slot, manual=manual
            )
    except IntegrityError:
        return None


def _record_missed(job: CronJob, slots: list[datetime], now: datetime) -> None:
    for slot in slots:
        try:
            with transaction.atomic():
                CronRun.objects.create(
                    job=job, job_uid=job.job_id, job_name=job.name, scheduled_for=slot,
                    status=CronRun.Status.MISSED, ended_at=now, error="missed while the gateway was down",
                )  # fmt: skip
        except IntegrityError:
            continue


# --- executing --------------------------------------------------------------------------


def _execute(job: CronJob, run: CronRun) -> None:
    publish_cron_event(job.job_id, "started", runAtMs=ms(run.scheduled_for))
    try:
        if job.session_target == CronJob.SessionTarget.MAIN:
            _execute_main(job, run)
        else:
            _start_isolated(job, run)
    except Exception as exc:  # a failing job must not stop the tick; it is recorded
        logger.exception("cron job %s failed to start", job.job_id)
        code = exc.code if isinstance(exc, GatewayError) else type(exc).__name__
        cron_run_finish(run=run, status=CronRun.Status.ERROR, error=f"{code}: {exc}")


def _execute_main(job: CronJob, run: CronRun) -> None:
    text = str((job.payload or {}).get("text") or "").strip()
    if not text:
        cron_run_finish(run=run, status=CronRun.Status.SKIPPED, error="main job requires non-empty systemEvent text")
        return
    target = system_event_add(
        text=text, session_key=job.session_key, agent_id=job.agent_id or None,
        context_key=f"cron:{job.job_id}", origin="cron",
    )  # fmt: skip
    intent = "immediate" if job.wake_mode == CronJob.WakeMode.NOW else "event"
    outcome = heartbeat_request(
        source="cron", intent=intent, reason=f"cron:{job.job_id}", agent_id=target.agent_id,
        session_key=target.session_key,
    )[0]  # fmt: skip
    status, error = CronRun.Status.OK, ""
    if intent == "immediate" and outcome.status in ("skipped", "deferred") and outcome.reason not in BUSY_REASONS:
        status, error = CronRun.Status.SKIPPED, outcome.reason
    cron_run_finish(run=run, status=status, error=error, summary=text, session_key=target.session_key,
                    run_id=outcome.run_id)  # fmt: skip


def _start_isolated(job: CronJob, run: CronRun) -> None:
    cfg = get_config()
    agent_id = keys.resolve_cron_agent(cfg=cfg, requested=job.agent_id or None)
    session_id = str(uuid.uuid4())
    base_key = f"agent:{agent_id}:cron:{job.job_id}"
    run_key = f"{base_key}:run:{session_id}"
    label = f"Cron: {job.name}"[:256]
    session_ensure(key=base_key, agent_id=agent_id, defaults={"display_name": label})
    session, _ = session_ensure(key=run_key, agent_id=agent_id, defaults={"display_name": label, "session_id": session_id})
    turn, _ = run_enqueue(
        session=session, agent_id=agent_id, kind=Run.Kind.CRON, input=_turn_input(cfg, job, run),
        timeout_s=job_timeout_s(job) or None,
    )  # fmt: skip
    CronRun.objects.filter(pk=run.pk).update(run_id=turn.run_id, session_key=run_key, session_id=session_id)


def _turn_input(cfg, job: CronJob, run: CronRun) -> dict[str, Any]:
    payload = job.payload or {}
    local = timezone.now().astimezone(zone("user", user_timezone=user_timezone(cfg)))
    message = f"[cron:{job.job_id} {job.name}] {payload['message'].strip()}\nCurrent time: {local:%Y-%m-%d %H:%M:%S %Z}"
    data: dict[str, Any] = {"message": message, "cron": {"jobId": job.job_id, "cronRunId": run.pk},
                            "inputProvenance": {"kind": "cron", "jobId": job.job_id}}  # fmt: skip
    for name in ("model", "thinking"):
        if payload.get(name):
            data[name] = payload[name]
    return data


# --- results ----------------------------------------------------------------------------


def cron_run_finish(
    *, run: CronRun, status: str, error: str = "", summary: str = "", session_key: str | None = None,
    run_id: str | None = None, model: str = "", provider: str = "", usage: dict | None = None,
) -> CronRun:  # fmt: skip
    """Record a run's end once (later calls are no-ops) and apply it to its job."""
    from .deliveries import deliver_result

    now = timezone.now()
    with transaction.atomic():
        run = CronRun.objects.select_for_update().get(pk=run.pk)
        if run.status != CronRun.Status.RUNNING:
            return run
        run.status, run.error, run.summary, run.ended_at = status, error or "", summary or "", now
        run.duration_ms = int((now - run.started_at).total_seconds() * 1000)
        run.session_key = session_key or run.session_key
        run.run_id = run_id or run.run_id
        run.model, run.provider, run.usage = model or "", provider or "", usage or {}
        run.save()
        job = CronJob.objects.select_for_update().filter(pk=run.job_id).first() if run.job_id else None
        deliver_result(job=job, run=run)
        if job is not None:
            _apply_result(job, run, now)
        publish_cron_event(run.job_uid, "finished", **_finished_fields(run, job))
    return run


def _finished_fields(run: CronRun, job: CronJob | None) -> dict[str, Any]:
    return {
        "runAtMs": ms(run.scheduled_for), "durationMs": run.duration_ms, "status": run.status,
        "error": run.error or None, "summary": run.summary or None, "delivered": run.delivered,
        "deliveryStatus": run.delivery_status or None, "deliveryError": run.delivery_error or None,
        "sessionId": run.session_id or None, "sessionKey": run.session_key or None,
        "nextRunAtMs": ms(job.next_run_at) if job and job.pk else None, "model": run.model or None,
        "provider": run.provider or None, "usage": run.usage or None,
    }  # fmt: skip


def _apply_result(job: CronJob, run: CronRun, now: datetime) -> None:
    job.last_run_at, job.last_status, job.last_error = run.started_at, run.status, run.error
    job.last_duration_ms = run.duration_ms
    job.consecutive_errors = job.consecutive_errors + 1 if run.status == CronRun.Status.ERROR else 0
    job.running_at = None
    if job.schedule.get("kind") == "at":
        if job.delete_after_run and run.status == CronRun.Status.OK:
            job_id = job.job_id
            job.delete()  # its queued system event stays: the reminder still has to reach the session
            publish_cron_event(job_id, "removed")
            return
        job.enabled, job.next_run_at = False, None
    elif job.next_run_at is not None:
        job.next_run_at = _next_after_result(job, run, now)
    job.save()


def _next_after_result(job: CronJob, run: CronRun, now: datetime) -> datetime | None:
    upcoming = job.next_run_at
    if run.status == CronRun.Status.ERROR:
        backoff = timedelta(seconds=BACKOFF_S[min(job.consecutive_errors, len(BACKOFF_S)) - 1])
        return max(upcoming, now + backoff)
    if job.catch_up == CronJob.CatchUp.ALL:
        return upcoming
    floor = now + CRON_ANTI_SPIN if job.schedule.get("kind") == "cron" else now
    return upcoming if upcoming > floor else _next(job, floor)


def cron_run_from_turn(*, turn: Run) -> CronRun | None:
    """Finish the cron run of an isolated job's agent turn (the ``cron`` run hook)."""
    run = CronRun.objects.filter(run_id=turn.run_id, status=CronRun.Status.RUNNING).first()
    if run is None:
        return None
    output = turn.output or {}
    status, error = CronRun.Status.OK, ""
    if turn.status != Run.Status.OK:
        status = CronRun.Status.ERROR
        error = TIMED_OUT if turn.status == Run.Status.TIMEOUT else _error_text(turn)
    return cron_run_finish(
        run=run, status=status, error=error, summary=str(output.get("text") or "").strip(),
        model=str(output.get("model") or ""), provider=str(output.get("provider") or ""), usage=turn.usage,
    )  # fmt: skip


def _error_text(turn: Run) -> str:
    error = turn.error or {}
    return str(error.get("message") if isinstance(error, dict) else error) or turn.status


def cron_timeouts_sweep(*, now: datetime | None = None) -> int:
    """End runs older than their job's timeout (plus a grace) as ``cron: job execution
    timed out``, aborting their agent turn; this also clears a crashed process's marks."""
    now = now or timezone.now()
    ended = 0
    for run in CronRun.objects.filter(status=CronRun.Status.RUNNING).select_related("job"):
        timeout = job_timeout_s(run.job)
        if not timeout or now - run.started_at <= timedelta(seconds=timeout) + TIMEOUT_GRACE:
            continue
        _abort_turn(run.run_id)
        cron_run_finish(run=run, status=CronRun.Status.ERROR, error=TIMED_OUT)
        ended += 1
    stale = now - timedelta(seconds=DEFAULT_TIMEOUT_S) - TIMEOUT_GRACE
    orphans = CronJob.objects.filter(running_at__lt=stale).exclude(runs__status=CronRun.Status.RUNNING)
    if orphans.exists():
        orphans.update(running_at=None)
    return ended


def _abort_turn(run_id: str | None) -> None:
    turn = Run.objects.filter(run_id=run_id).first() if run_id else None
    if turn is None or turn.is_terminal:
        return
    try:
        run_abort(run=turn, reason=TIMED_OUT)
    except GatewayError:
        logger.info("cron turn %s already ended", run_id)


# --- cron.run ---------------------------------------------------------------------------


def cron_job_run(*, job: CronJob, mode: str = "force") -> dict[str, Any]:
    """``cron.run``: ``force`` runs now (the schedule is untouched), ``due`` only when due."""
    now = timezone.now()
    if job.running_at is not None:
        return {"ok": True, "ran": False, "reason": "already-running"}
    if mode == "due":
        if not (job.enabled and job.next_run_at and job.next_run_at <= now):
            return {"ok": True, "ran": False, "reason": "not-due"}
        return {"ok": True, "ran": True} if _fire_due(job.pk, now) else {"ok": True, "ran": False, "reason": "already-running"}
    run = _claim_manual(job, now)
    if run is None:
        return {"ok": True, "ran": False, "reason": "already-running"}
    _execute(job, run)
    return {"ok": True, "ran": True}


def _claim_manual(job: CronJob, now: datetime) -> CronRun | None:
    with transaction.atomic():
        if not CronJob.objects.filter(pk=job.pk, running_at__isnull=True).update(running_at=now):
            return None
        run = insert_run(job, now, manual=True)
        if run is None:
            CronJob.objects.filter(pk=job.pk).update(running_at=None)
        return run

"""Heartbeat wakes: one request becomes at most one queued heartbeat run (spec-a §4.2–4.4).

OpenClaw keeps pending wakes in a timer map and runs heartbeats in process; here a
request is decided in one transaction holding the agent's :class:`HeartbeatState` row:

1. the global switch and the agent's heartbeat config (``disabled``; a configured but
   unscheduled agent still runs once for a targeted immediate wake);
2. the deferral gate: ``manual`` runs, a flood guard (5 run starts per 60 s), then
   ``immediate`` runs, ``scheduled``/``event`` wait for the due time (``not-due``,
   ``min-spacing``);
3. the run gates: active hours (``quiet-hours``), then coalescing (a queued heartbeat run
   of the session absorbs the request), then busy lanes (``requests-in-flight``,
   ``cron-in-progress``, ``lanes-busy``: the request waits in ``pending_wakes`` and is
   retried after 1 s by :func:`heartbeat_tick`);
4. a ``Run`` of kind ``heartbeat`` queued with the heartbeat prompt.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from openclaw_site.config import GatewayConfig, HeartbeatConfig, get_config
from sessions_app import keys
from sessions_app.events import BROADCAST_GROUP, now_ms, publish_on_commit
from sessions_app.models import Run, SystemEvent
from sessions_app.services.runs import run_enqueue
from sessions_app.services.sessions import session_ensure

from ..models import CronJob, HeartbeatState, SchedulerState
from ..schedules import heartbeat_next_due, heartbeat_phase_ms, within_active_hours, zone

FLOOD_MAX_RUNS = 5
FLOOD_WINDOW = timedelta(seconds=60)
MIN_SPACING = timedelta(seconds=30)
BUSY_RETRY = timedelta(seconds=1)
PRIORITY = {"retry": 0, "scheduled": 1, "event": 2, "immediate": 3, "manual": 3}
UNSCHEDULED_IMMEDIATE_SOURCES = frozenset(
    {"manual", "notifications-event", "restart-sentinel", "cron", "hook", "background-task", "acp-spawn"}
)
CRON_EVENT_PROMPT = (
    "A scheduled reminder has been triggered. The reminder content is shown above as System: lines. "
    "Handle it now and relay anything the user needs to know. If nothing needs attention, reply HEARTBEAT_OK."
)
EXEC_EVENT_PROMPT = (
    "An asynchronous command you started has finished; its result is shown above as System: lines. "
    "Relay the result to the user if it matters. If nothing needs attention, reply HEARTBEAT_OK."
)


@dataclass(frozen=True)
class HeartbeatRequest:
    """One wake request (``requestHeartbeat``); ``targeted`` when an agent or key was given."""

    source: str
    intent: str
    reason: str
    agent_id: str | None = None
    session_key: str | None = None

    @property
    def targeted(self) -> bool:
        return bool(self.agent_id or self.session_key)

    @property
    def target(self) -> str:
        return f"{self.agent_id or ''}::{self.session_key or ''}"


@dataclass(frozen=True)
class HeartbeatOutcome:
    """``queued`` (a new run), ``coalesced`` (into a queued run), ``skipped`` or ``deferred``."""

    status: str
    agent_id: str
    reason: str = ""
    session_key: str = ""
    run_id: str | None = None


# --- switch and config ------------------------------------------------------------------


def heartbeats_enabled() -> bool:
    state = SchedulerState.objects.filter(pk=1).first()
    return state.heartbeats_enabled if state else True


def heartbeats_set_enabled(*, enabled: bool) -> bool:
    """The ``set-heartbeats`` switch (durable): when off every request is ``disabled``."""
    SchedulerState.objects.update_or_create(pk=1, defaults={"heartbeats_enabled": bool(enabled)})
    return bool(enabled)


def heartbeat_config_for(cfg: GatewayConfig, agent_id: str) -> HeartbeatConfig | None:
    """The agent's scheduled heartbeat, or None when the agent runs none."""
    agent = cfg.agent(agent_id)
    return agent.heartbeat if agent else None


def user_timezone(cfg: GatewayConfig) -> str | None:
    defaults = ((cfg.raw or {}).get("agents") or {}).get("defaults") or {}
    value = defaults.get("userTimezone")
    return value if isinstance(value, str) else None


def _schedule_of(cfg: GatewayConfig, agent_id: str, hb: HeartbeatConfig) -> tuple[int, str]:
    seed = getattr(settings, "OPENCLAW_HEARTBEAT_SEED", "")
    phase = heartbeat_phase_ms(agent_id=agent_id, interval_ms=hb.every_ms, seed=seed)
    signature = json.dumps([hb.every_ms, phase, hb.active_hours, user_timezone(cfg)], sort_keys=True)
    return phase, signature


def heartbeat_state_sync(*, cfg: GatewayConfig, agent_id: str, hb: HeartbeatConfig, now: datetime) -> HeartbeatState:
    """The agent's state row (locked when in a transaction) with a due time that matches
    the config; a reload with the same interval, phase and hours keeps the due time."""
    state, _ = HeartbeatState.objects.select_for_update().get_or_create(agent_id=agent_id)
    phase, signature = _schedule_of(cfg, agent_id, hb)
    if state.next_due_at is None or state.schedule_signature != signature:
        state.next_due_at = heartbeat_next_due(
            now=now, interval_ms=hb.every_ms, phase_ms=phase, active_hours=hb.active_hours,
            user_timezone=user_timezone(cfg),
        )  # fmt: skip
        state.schedule_signature = signature
        state.save(update_fields=["next_due_at", "schedule_signature", "updated_at"])
    return state


# --- requests ---------------------------------------------------------------------------


def heartbeat_request(
    *, source: str, intent: str, reason: str, agent_id: str | None = None, session_key: str | None = None
) -> list[HeartbeatOutcome]:
    """Request a heartbeat; a targeted request concerns one agent, an untargeted one every
    scheduled agent. ``session_key`` must be canonical (see ``keys.resolve_cron_target``)."""
    cfg = get_config()
    request = HeartbeatRequest(source=source, intent=intent, reason=reason, agent_id=agent_id, session_key=session_key)
    if request.targeted:
        target = keys.normalize_agent_id(agent_id or keys.resolve_wake_agent_id(session_key, cfg=cfg))
        return [_request_agent(cfg, target, request)]
    return [_request_agent(cfg, agent.id, request) for agent in cfg.heartbeat_agents()]


def _request_agent(cfg: GatewayConfig, agent_id: str, request: HeartbeatRequest) -> HeartbeatOutcome:
    now = timezone.now()
    with transaction.atomic():
        hb = heartbeat_config_for(cfg, agent_id)
        state = (
            heartbeat_state_sync(cfg=cfg, agent_id=agent_id, hb=hb, now=now)
            if hb
            else HeartbeatState.objects.select_for_update().get_or_create(agent_id=agent_id)[0]
        )
        if not heartbeats_enabled() or (hb is None and not _may_run_unscheduled(cfg, agent_id, request)):
            return _skip(state, request, "disabled", now)
        deferral = _deferral(state, request, agent_id, now)
        if deferral == "flood" and request.session_key:
            # A targeted event would be stranded on a session no scheduled heartbeat visits:
            # retry once the flood window has passed.
            return _park(state, request, "flood", now, retry_at=_flood_ends(agent_id, now))
        if deferral:
            return _defer(state, deferral)
        return _gate_and_enqueue(cfg, state, hb or HeartbeatConfig(), request, now)


def _may_run_unscheduled(cfg: GatewayConfig, agent_id: str, request: HeartbeatRequest) -> bool:
    """A configured agent without a schedule still runs once for a targeted wake-now."""
    if not request.targeted or not cfg.has_agent(agent_id):
        return False
    if request.source == "exec-event":
        return request.intent == "event"
    return request.intent in ("immediate", "manual") and request.source in UNSCHEDULED_IMMEDIATE_SOURCES


def _deferral(state: HeartbeatState, request: HeartbeatRequest, agent_id: str, now: datetime) -> str:
    """OpenClaw's ``shouldDeferWake``: the reason to defer, or "" to go on."""
    if request.intent == "manual":
        return ""
    recent = Run.objects.filter(kind=Run.Kind.HEARTBEAT, agent_id=agent_id, created_at__gte=now - FLOOD_WINDOW)
    if recent.count() >= FLOOD_MAX_RUNS:
        return "flood"
    if request.intent == "immediate":
        return ""
    not_due = state.next_due_at is not None and now < state.next_due_at
    if request.intent == "scheduled":
        return "not-due" if not_due else ""
    if state.last_run_at is None:
        return ""
    if not_due:
        return "not-due"
    return "min-spacing" if now - state.last_run_at < MIN_SPACING else ""


def _flood_ends(agent_id: str, now: datetime) -> datetime:
    recent = Run.objects.filter(kind=Run.Kind.HEARTBEAT, agent_id=agent_id, created_at__gte=now - FLOOD_WINDOW)
    oldest = recent.order_by("created_at").values_list("created_at", flat=True).first() or now
    return max(oldest + FLOOD_WINDOW, now + BUSY_RETRY)


def _gate_and_enqueue(
    cfg: GatewayConfig, state: HeartbeatState, hb: HeartbeatConfig, request: HeartbeatRequest, now: datetime
) -> HeartbeatOutcome:
    if not within_active_hours(hb.active_hours, now, user_timezone=user_timezone(cfg)):
        return _skip(state, request, "quiet-hours", now, advance=hb)
    session_key = heartbeat_session_key(cfg=cfg, agent_id=state.agent_id, hb=hb, forced=request.session_key)
    queued = Run.objects.queued().filter(kind=Run.Kind.HEARTBEAT, session_key=session_key).first()
    if queued is not None:
        _raise_priority(queued, request)
        return HeartbeatOutcome("coalesced", state.agent_id, request.reason, session_key, queued.run_id)
    busy = _busy_reason(state.agent_id, session_key, hb, request)
    if busy:
        return _park(state, request, busy, now)
    run = _enqueue_run(cfg, state.agent_id, session_key, hb, request, now)
    _record_start(state, request, hb, cfg, now)
    return HeartbeatOutcome("queued", state.agent_id, request.reason, session_key, run.run_id)


def heartbeat_session_key(*, cfg: GatewayConfig, agent_id: str, hb: HeartbeatConfig, forced: str | None) -> str:
    """Where the heartbeat runs: a forced key of the same agent (never a subagent), else
    ``heartbeat.session``, else the agent's main key; ``global`` under scope global;
    ``<key>:heartbeat`` with ``isolatedSession``."""
    if cfg.scope == "global":
        return "global"
    key = _own_key(cfg, agent_id, forced) or _own_key(cfg, agent_id, hb.session)
    key = key or keys.resolve_agent_main_session_key(cfg=cfg, agent_id=agent_id)
    return f"{key}:heartbeat" if hb.isolated_session else key


def _own_key(cfg: GatewayConfig, agent_id: str, raw: str | None) -> str | None:
    if not (raw or "").strip() or keys.is_subagent_session_key(raw):
        return None
    candidate = keys.to_agent_store_session_key(agent_id=agent_id, request_key=raw, main_key=cfg.main_key)
    canonical = keys.canonicalize_main_session_alias(cfg=cfg, agent_id=agent_id, session_key=candidate)
    same_agent = keys.resolve_agent_id_from_session_key(canonical) == keys.normalize_agent_id(agent_id)
    return canonical if same_agent else None


def _raise_priority(run: Run, request: HeartbeatRequest) -> None:
    current = run.input.get("intent", "scheduled")
    if PRIORITY.get(request.intent, 2) > PRIORITY.get(current, 2):
        updated = {**run.input, "intent": request.intent, "reason": request.reason, "source": request.source}
        Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(input=updated)


def _busy_reason(agent_id: str, session_key: str, hb: HeartbeatConfig, request: HeartbeatRequest) -> str:
    if Run.objects.active().filter(session_key=session_key).exists():
        return "requests-in-flight"
    if request.source != "cron" and CronJob.objects.filter(agent_id=agent_id, running_at__isnull=False).exists():
        return "cron-in-progress"
    agent_runs = Run.objects.active().filter(agent_id=agent_id)
    if hb.skip_when_busy and agent_runs.exists():
        return "lanes-busy"
    if request.intent not in ("immediate", "manual") and agent_runs.filter(kind=Run.Kind.USER).exists():
        return "requests-in-flight"
    return ""


def _enqueue_run(
    cfg: GatewayConfig, agent_id: str, session_key: str, hb: HeartbeatConfig, request: HeartbeatRequest, now: datetime
) -> Run:
    session, _ = session_ensure(key=session_key, agent_id=agent_id)
    payload = {
        "message": heartbeat_prompt(cfg=cfg, session_key=session_key, hb=hb, request=request, now=now),
        "heartbeat": True, "source": request.source, "intent": request.intent, "reason": request.reason,
        "ackMaxChars": hb.ack_max_chars, "restoreUpdatedAt": session.updated_at.isoformat(),
        # Marks the prompt's transcript entry, so UIs can tell it from what a user typed.
        "inputProvenance": {"kind": "heartbeat", "reason": request.reason, "source": request.source},
    }  # fmt: skip
    if hb.model:
        payload["model"] = hb.model
    run, _ = run_enqueue(
        session=session, agent_id=agent_id, kind=Run.Kind.HEARTBEAT, input=payload, timeout_s=hb.timeout_seconds
    )
    return run


def heartbeat_prompt(
    *, cfg: GatewayConfig, session_key: str, hb: HeartbeatConfig, request: HeartbeatRequest, now: datetime
) -> str:
    """The cron-event prompt when ``cron:`` events wait, the exec-event prompt for exec
    wakes, else the configured prompt; a current-time line is appended."""
    pending = SystemEvent.objects.pending().for_session(session_key)
    if request.source == "exec-event":
        body = EXEC_EVENT_PROMPT
    elif pending.filter(context_key__startswith="cron:").exists():
        body = CRON_EVENT_PROMPT
    else:
        body = hb.prompt
    local = now.astimezone(zone("user", user_timezone=user_timezone(cfg)))
    return f"{body}\nCurrent time: {local:%Y-%m-%d %H:%M:%S %Z}"


# --- bookkeeping ------------------------------------------------------------------------


def _record_start(
    state: HeartbeatState, request: HeartbeatRequest, hb: HeartbeatConfig, cfg: GatewayConfig, now: datetime
) -> None:
    state.last_run_at = now
    state.last_status = "queued"
    state.last_skip_reason = ""
    _advance(state, request, hb, cfg, now)
    state.save(update_fields=["last_run_at", "last_status", "last_skip_reason", "next_due_at", "updated_at"])


def _advance(state: HeartbeatState, request: HeartbeatRequest, hb: HeartbeatConfig, cfg: GatewayConfig, now) -> None:
    """Interval wakes move to the next phase slot, other wakes to now + interval."""
    if heartbeat_config_for(cfg, state.agent_id) is None:
        return
    if request.intent == "scheduled":
        phase, _ = _schedule_of(cfg, state.agent_id, hb)
        state.next_due_at = heartbeat_next_due(
            now=now, interval_ms=hb.every_ms, phase_ms=phase, active_hours=hb.active_hours,
            user_timezone=user_timezone(cfg),
        )  # fmt: skip
    else:
        state.next_due_at = now + timedelta(milliseconds=hb.every_ms)


def _defer(state: HeartbeatState, reason: str) -> HeartbeatOutcome:
    state.last_skip_reason = reason
    state.save(update_fields=["last_skip_reason", "updated_at"])
    return HeartbeatOutcome("deferred", state.agent_id, reason)


def _skip(
    state: HeartbeatState, request: HeartbeatRequest, reason: str, now: datetime, *, advance: HeartbeatConfig | None = None
) -> HeartbeatOutcome:
    if advance is not None and request.intent == "scheduled":
        _advance(state, request, advance, get_config(), now)
    state.last_status = "skipped"
    state.last_skip_reason = reason
    record_heartbeat_event(state, {"status": "skipped", "reason": reason, "sessionKey": request.session_key})
    state.save(update_fields=["last_status", "last_skip_reason", "next_due_at", "last_event", "last_event_at", "updated_at"])
    return HeartbeatOutcome("skipped", state.agent_id, reason, request.session_key or "")


def _park(
    state: HeartbeatState, request: HeartbeatRequest, reason: str, now: datetime, *, retry_at: datetime | None = None
) -> HeartbeatOutcome:
    """Keep one pending wake per target (the higher priority wins) for a retry in 1 s
    (or at ``retry_at``)."""
    pending = dict(state.pending_wakes or {})
    previous = pending.get(request.target)
    if previous is None or PRIORITY.get(request.intent, 2) >= PRIORITY.get(previous.get("intent"), 2):
        pending[request.target] = {**asdict(request), "busy": reason}
    state.pending_wakes = pending
    state.retry_at = retry_at or now + BUSY_RETRY
    state.last_skip_reason = reason
    fields = ["pending_wakes", "retry_at", "last_skip_reason", "updated_at"]
    if previous is None:
        record_heartbeat_event(state, {"status": "skipped", "reason": reason, "sessionKey": request.session_key})
        fields += ["last_event", "last_event_at"]
    state.save(update_fields=fields)
    return HeartbeatOutcome("skipped", state.agent_id, reason, request.session_key or "")


def record_heartbeat_event(state: HeartbeatState, fields: dict) -> dict:
    """Store the ``heartbeat`` event on the state (for ``last-heartbeat``) and publish it
    to every connection after commit. The caller saves ``state``."""
    payload = {"ts": now_ms(), "agentId": state.agent_id, **{k: v for k, v in fields.items() if v is not None}}
    state.last_event = payload
    state.last_event_at = timezone.now()
    publish_on_commit(BROADCAST_GROUP, "heartbeat", payload)
    return payload


def heartbeat_retry_pending(*, now: datetime | None = None, agent_id: str | None = None) -> list[HeartbeatOutcome]:
    """Re-request parked wakes (busy targets): those whose retry time has come, or with
    ``agent_id`` every parked wake of that agent at once (one of its runs just ended)."""
    now = now or timezone.now()
    parked = HeartbeatState.objects.filter(retry_at__isnull=False)
    parked = parked.filter(agent_id=agent_id) if agent_id else parked.filter(retry_at__lte=now)
    outcomes: list[HeartbeatOutcome] = []
    for agent in list(parked.values_list("agent_id", flat=True)):
        for request in _take_pending(agent, None if agent_id else now):
            outcomes += heartbeat_request(**{**request, "source": request.get("source") or "retry"})
    return outcomes


def _take_pending(agent_id: str, due_by: datetime | None) -> list[dict]:
    with transaction.atomic():
        rows = HeartbeatState.objects.select_for_update().filter(agent_id=agent_id, retry_at__isnull=False)
        state = (rows.filter(retry_at__lte=due_by) if due_by else rows).first()
        if state is None:
            return []
        pending = list((state.pending_wakes or {}).values())
        state.pending_wakes, state.retry_at = {}, None
        state.save(update_fields=["pending_wakes", "retry_at", "updated_at"])
    fields = ("source", "intent", "reason", "agent_id", "session_key")
    return [{name: item.get(name) for name in fields} for item in pending]


def heartbeat_tick(*, now: datetime | None = None) -> list[HeartbeatOutcome]:
    """One scheduler pass: every scheduled agent whose due time has come gets an interval
    request; parked wakes are retried. Safe to run from any number of processes; a pass
    with nothing due only reads."""
    now = now or timezone.now()
    cfg = get_config()
    outcomes: list[HeartbeatOutcome] = []
    for agent in cfg.heartbeat_agents():
        state = HeartbeatState.objects.filter(agent_id=agent.id).first()
        if state is None or state.next_due_at is None or state.schedule_signature != _schedule_of(cfg, agent.id, agent.heartbeat)[1]:
            with transaction.atomic():
                state = heartbeat_state_sync(cfg=cfg, agent_id=agent.id, hb=agent.heartbeat, now=now)
        if state.next_due_at <= now:
            outcomes += heartbeat_request(source="interval", intent="scheduled", reason="interval", agent_id=agent.id)
    return outcomes + heartbeat_retry_pending(now=now)

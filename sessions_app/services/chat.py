"""Sending a message into a session, and what happens when the session is busy.

:func:`chat_send` is the one service behind ``chat.send``, ``sessions.send``,
``sessions.steer`` and ``agent``. An idle session gets a new queued run. A busy
session (one running turn: the *session lane*) follows the queue mode (spec-a §7.2):

- ``steer``: a queued run marked ``queueMode=steer``; the running turn consumes it
  (:func:`steer_drain`) before its next model step and the steer run ends ``ok`` with
  ``output.absorbedInto``. Not consumed before the turn ends → it runs as a followup.
- ``followup``: a queued run after the active one (``not_before`` = now + debounce).
- ``collect``: queued runs that are coalesced into one turn once the quiet window
  (debounce) passes (:func:`collect_absorb`, called by the engine when it starts one).
- ``steer-backlog``: a steer run *and* a followup run for the same message.
- ``interrupt``: abort the running run, then run the new message.

``cap`` bounds the queued runs of a session; ``drop`` old (abort the oldest), new
(reject the newest, ``QUEUE_FULL``) or summarize (abort the oldest and carry a one-line
summary into the new run's prompt). Per-session ``queue_*`` overrides beat the config.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from openclaw_site.errors import UnavailableError

from ..events import ENGINE_GROUP, event_batch
from ..models import Run, Session
from ..selectors import assert_send_allowed
from . import run_events
from .runs import run_enqueue
from .sessions import session_ensure, transcript_append

STEER = "steer"
FOLLOWUP = "followup"
COLLECT = "collect"
STEER_BACKLOG = "steer-backlog"
INTERRUPT = "interrupt"
DIRECT = "direct"
ANNOUNCE_QUEUE = "announce"  # a queued turn of the requester's announce queue (services.announce_queue)
SUMMARY_CHARS = 80


class QueueFullError(UnavailableError):
    """The session's queue is at its cap and the drop policy is ``new``."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"session queue is full (cap {cap})", details={"code": "QUEUE_FULL", "cap": cap})


@dataclass(frozen=True)
class QueueSettings:
    mode: str
    debounce_ms: int
    cap: int
    drop: str


@dataclass
class SendResult:
    """What ``chat.send`` answers: the run, its wire status and whether it was a replay."""

    run: Run
    status: str
    cached: bool = False
    session: Session | None = None
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)


def queue_settings(*, session: Session, channel: str | None = None) -> QueueSettings:
    """Per-session ``queue_*`` overrides over ``messages.queue`` (byChannel applied)."""
    from openclaw_site.config import get_config

    base = get_config().queue_defaults.for_channel(channel or session.channel)
    return QueueSettings(
        mode=session.queue_mode or base.mode,
        debounce_ms=base.debounce_ms if session.queue_debounce_ms is None else session.queue_debounce_ms,
        cap=session.queue_cap or base.cap,
        drop=session.queue_drop or base.drop,
    )


def replay_status(run: Run) -> str:
    """``in_flight`` while a run is queued or running, else its terminal status."""
    return "in_flight" if not run.is_terminal else run.status


def chat_send(
    *,
    session_key: str,
    message: str,
    idempotency_key: str,
    agent_id: str | None = None,
    kind: str = Run.Kind.USER,
    channel: str = "webchat",
    timeout_s: int | None = None,
    queue_mode: str | None = None,
    extra_input: dict[str, Any] | None = None,
    session_defaults: dict[str, Any] | None = None,
) -> SendResult:
    """Start (or queue) a turn for ``message`` on the session with canonical ``session_key``.

    ``run_id`` = ``idempotency_key``: a replay answers from the recorded run. Slash
    commands are answered before the model. ``queue_mode`` forces a mode (``interrupt``
    for ``sessions.steer``). Raises ``SendBlockedError`` (send policy deny), :class:`QueueFullError`.
    """
    existing = Run.objects.filter(run_id=idempotency_key).first()
    if existing is not None:
        return SendResult(run=existing, status=replay_status(existing), cached=True)
    session, _ = session_ensure(key=session_key, agent_id=agent_id, defaults=session_defaults)
    assert_send_allowed(session, channel=channel)
    from .commands import command_handle, command_parse

    command = command_parse(message)
    if command is not None:
        return command_handle(session=session, command=command, run_id=idempotency_key, channel=channel)
    run_input = {"message": message, "channel": channel, **(extra_input or {})}
    with transaction.atomic():
        session = Session.objects.select_for_update().get(pk=session.pk)
        run = _queue(session=session, run_input=run_input, run_id=idempotency_key, kind=kind,
                     timeout_s=timeout_s, forced_mode=queue_mode, channel=channel)  # fmt: skip
    return SendResult(run=run, status="started", session=session)


def _queue(*, session: Session, run_input: dict, run_id: str, kind: str, timeout_s: int | None,
           forced_mode: str | None, channel: str) -> Run:
    active = _active_run(session)
    if active is None:
        return _enqueue(session, run_input, run_id, kind, timeout_s, mode=DIRECT)
    settings = queue_settings(session=session, channel=channel)
    mode = forced_mode or settings.mode
    if mode == INTERRUPT:
        run_abort(run=active, reason="interrupted by a new message")
        return _enqueue(session, run_input, run_id, kind, timeout_s, mode=INTERRUPT)
    if mode == STEER:
        return _enqueue(session, run_input, run_id, kind, timeout_s, mode=STEER, parent=active)
    _make_room(session, settings, run_input)
    not_before = timezone.now() + dt.timedelta(milliseconds=settings.debounce_ms)
    if mode == STEER_BACKLOG:
        _enqueue(session, run_input, f"{run_id}:steer", kind, timeout_s, mode=STEER, parent=active)
        return _enqueue(session, run_input, run_id, kind, timeout_s, mode=FOLLOWUP, not_before=not_before)
    if mode == COLLECT:
        _queued(session).filter(input__queueMode=COLLECT).update(not_before=not_before)
    return _enqueue(session, run_input, run_id, kind, timeout_s, mode=mode, not_before=not_before)


def _enqueue(session, run_input, run_id, kind, timeout_s, *, mode, parent=None, not_before=None) -> Run:
    run, _ = run_enqueue(
        session=session, agent_id=session.agent_id, kind=kind, input={**run_input, "queueMode": mode},
        run_id=run_id, timeout_s=timeout_s, parent_run_id=parent.run_id if parent else None,
    )  # fmt: skip
    if not_before is not None:
        Run.objects.filter(pk=run.pk).update(not_before=not_before)
        run.not_before = not_before
    return run


def _active_run(session: Session) -> Run | None:
    if not session.active_run_id:
        return None
    return Run.objects.filter(run_id=session.active_run_id, status=Run.Status.RUNNING).first()


def _queued(session: Session):
    """The session's queued message turns (steer runs and the announce queue aside)."""
    return Run.objects.filter(session=session, status=Run.Status.QUEUED).exclude(
        input__queueMode__in=(STEER, ANNOUNCE_QUEUE)
    )


def _make_room(session: Session, settings: QueueSettings, run_input: dict) -> None:
    """Apply ``cap``/``drop`` before one more run is queued behind the active one."""
    queued = list(_queued(session).order_by("created_at", "id"))
    overflow = len(queued) - settings.cap + 1
    if overflow <= 0 or settings.cap < 1:
        return
    if settings.drop == "new":
        raise QueueFullError(settings.cap)
    dropped = queued[:overflow]
    for run in dropped:
        run_abort(run=run, reason="dropped: session queue is full")
    if settings.drop == "summarize":
        summary = [f"- {(run.input.get('message') or '')[:SUMMARY_CHARS]}" for run in dropped]
        run_input["droppedSummary"] = [*run_input.get("droppedSummary", []), *summary]


# --- consumed by the running turn ---------------------------------------------------


def steer_drain(*, session: Session, run: Run) -> list[Any]:
    """Take the session's queued steer runs into ``run``: their messages join the
    transcript (returned entries) and they end ``ok`` with ``output.absorbedInto``."""
    entries = []
    with event_batch():
        for steer in Run.objects.filter(session=session, status=Run.Status.QUEUED, input__queueMode=STEER).order_by("created_at", "id"):
            if _absorb(steer, into=run, mode=STEER):
                entries.append(_append_input(session, run, steer.input, source_run_id=steer.run_id))
    return entries


def collect_absorb(*, session: Session, run: Run) -> list[dict[str, Any]]:
    """When a collect run starts, coalesce the session's other queued collect runs into it;
    returns the inputs (the leader's first) in arrival order."""
    inputs = [{**run.input, "runId": run.run_id}]
    if run.input.get("queueMode") != COLLECT:
        return inputs
    with transaction.atomic():
        for other in _queued(session).filter(input__queueMode=COLLECT).order_by("created_at", "id"):
            if _absorb(other, into=run, mode=COLLECT):
                inputs.append({**other.input, "runId": other.run_id})
    return inputs


def _absorb(other: Run, *, into: Run, mode: str) -> bool:
    now = timezone.now()
    return bool(Run.objects.filter(pk=other.pk, status=Run.Status.QUEUED).update(
        status=Run.Status.OK, started_at=now, ended_at=now,
        output={"absorbedInto": into.run_id, "mode": mode},
    ))  # fmt: skip


def _append_input(session: Session, run: Run, run_input: dict, *, source_run_id: str):
    return transcript_append(
        session=session, role="user", content=run_input.get("message", ""), run_id=run.run_id,
        provenance={"kind": "steer", "sourceRunId": source_run_id}, idempotency_key=f"{source_run_id}:input",
    )  # fmt: skip


# --- abort --------------------------------------------------------------------------


def run_abort(*, run: Run, reason: str = "aborted") -> bool:
    """Abort one run: a queued run ends ``aborted`` now; a running one gets
    ``abort_requested`` and its engine is told (it also polls). True only if the run was
    still active when the row was updated (one that ended meanwhile gives False)."""
    if run.status == Run.Status.QUEUED:
        if _abort_queued(run, reason):
            return True
        run.refresh_from_db(fields=["status"])  # claimed (or ended) meanwhile
    if run.status != Run.Status.RUNNING:
        return False
    if not Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING).update(abort_requested=True):
        return False
    run_id = run.run_id
    transaction.on_commit(lambda: _tell_engines({"type": "engine.abort", "runId": run_id}))
    return True


def _abort_queued(run: Run, reason: str) -> bool:
    now = timezone.now()
    error = {"code": "ABORTED", "message": reason}
    if not Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(
        status=Run.Status.ABORTED, ended_at=now, error=error, abort_requested=True
    ):
        return False
    if run.session is not None:
        run_events.publish_chat(session=run.session, run_id=run.run_id, seq=1, state="aborted", stopReason="aborted")
    from .run_hooks import run_finished

    run.refresh_from_db()
    transaction.on_commit(lambda: run_finished(run))
    return True


def session_abort(*, session: Session, run_id: str | None = None, include_queued: bool = True) -> list[str]:
    """Abort ``run_id`` (of this session), or its queued runs then its running run.
    Returns the ids of the runs that were aborted."""
    runs = Run.objects.filter(session=session, status__in=[Run.Status.QUEUED, Run.Status.RUNNING])
    if run_id is not None:
        runs = runs.filter(run_id=run_id)
    elif not include_queued:
        runs = runs.filter(status=Run.Status.RUNNING)
    ordered = sorted(runs, key=lambda r: (r.status != Run.Status.QUEUED, r.created_at))
    with transaction.atomic():
        return [run.run_id for run in ordered if run_abort(run=run)]


def _tell_engines(message: dict[str, Any]) -> None:
    from ..events import layer_send

    layer_send(ENGINE_GROUP, message)  # engines also poll abort_requested


def reply_note(*, session: Session, run_id: str, text: str, stop_reason: str = "command"):
    """An assistant transcript entry (``session.message``) plus its ``chat`` final."""
    entry = transcript_append(session=session, role="assistant", content=text, run_id=run_id,
                              stop_reason=stop_reason, idempotency_key=f"{run_id}:reply")  # fmt: skip
    run_events.publish_chat(session=session, run_id=run_id, seq=1, state="final", stopReason=stop_reason,
                            message=run_events.assistant_message(text))  # fmt: skip
    return entry

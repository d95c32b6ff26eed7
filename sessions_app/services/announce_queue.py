"""How an announce reaches its requester: the two primitives of spec-b §3.7 and their order.

- **direct**: the durable ``Delivery`` to the requester, read by its live run at the next
  model step (the newer builds' "steer into the live run first") or, when it is idle, by
  a turn started for it (``services.deliveries``).
- **queue/steer**: only while a requester run is active, by the requester session's queue
  mode (per-session ``queue_*`` overrides over ``messages.queue``):

  - ``steer`` / ``steer-backlog``: bound to the active run, read at its next step →
    ``steered``;
  - ``followup`` / ``collect`` / ``interrupt``: the **announce queue** → ``queued``. The
    announce waits in a queued turn of its own on the requester (``queueMode:
    "announce"``), after the active run and ``debounceMs`` after the last enqueue.
    ``collect`` gathers every queued announce into one turn, one prompt titled
    ``[Queued announce messages while agent was busy]``; the other modes run one turn per
    announce, in order. Over ``cap``: ``new`` drops the incoming announce, ``old`` the
    oldest queued ones, ``summarize`` drops the oldest and puts their one-line summaries
    at the head of the next queued turn's prompt;
  - no active run → none (then direct).

Order: an announce that expects a completion message (the ``sessions_spawn`` path) goes
direct, and falls back to queue/steer only when direct failed transiently; any other
announce tries queue/steer first and goes direct when that placed nothing. The path and
phases are recorded on the delivery's payload (``announcePath``). A dropped announce is
never silent: a summarized one reaches the requester as its summary line, an ``old`` or
``new`` drop is given up with the visible "could not be delivered" notice
(``services.announce``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..models import Delivery, Run, Session
from .chat import ANNOUNCE_QUEUE, COLLECT, STEER, STEER_BACKLOG, QueueSettings, queue_settings, run_abort
from . import deliveries
from .deliveries import OPEN_STATES
from .runs import run_enqueue

DIRECT, STEERED, QUEUED, DROPPED = "direct", "steered", "queued", "dropped"
BATCH_TITLE = "[Queued announce messages while agent was busy]"


@dataclass
class Placement:
    """Where an announce went: ``path`` (direct | steered | queued | dropped), its delivery
    (none when the incoming one was dropped), the phases tried, and the queued announces
    dropped to make room (``(delivery, reason, summarized)``)."""

    path: str
    delivery: Delivery | None
    phases: list[str]
    reason: str = ""
    dropped: list[tuple[Delivery, str, bool]] = field(default_factory=list)


@dataclass(frozen=True)
class Announce:
    """What to place: the delivery's fields, and the line that stands for it in a summary."""

    source_session_key: str
    source_run_id: str
    target_session_key: str
    target_run_id: str | None
    payload: dict[str, Any]
    idempotency_key: str
    summary_line: str
    expects_completion_message: bool


def announce_place(announce: Announce, *, is_permanent) -> Placement:
    """Place ``announce`` per spec-b §3.7 (idempotent by its key). ``is_permanent(exc)``
    tells whether a failed direct attempt may fall back to queue/steer."""
    existing = Delivery.objects.filter(idempotency_key=announce.idempotency_key).first()
    if existing is not None:
        path = (existing.payload.get("announcePath") or {}).get("path", DIRECT)
        return Placement(path=path, delivery=existing, phases=[])
    if announce.expects_completion_message:
        try:
            with transaction.atomic():
                return _direct(announce, phases=["direct-primary"])
        except Exception as exc:
            if is_permanent(exc):
                raise
            placed = _queue_or_steer(announce, phases=["direct-primary", "steer-fallback"])
            if placed is None:
                raise
            return placed
    return _queue_or_steer(announce, phases=["steer-primary"]) or _direct(
        announce, phases=["steer-primary", "direct-primary"]
    )


def _direct(announce: Announce, *, phases: list[str]) -> Placement:
    delivery = _enqueue(announce, target_run_id=announce.target_run_id, path=DIRECT, phases=phases)
    return Placement(path=DIRECT, delivery=delivery, phases=phases)


def _enqueue(announce: Announce, *, target_run_id: str | None, path: str, phases: list[str]) -> Delivery:
    payload = {**announce.payload, "summaryLine": announce.summary_line,
               "announcePath": {"path": path, "phases": phases}}  # fmt: skip
    delivery, _ = deliveries.delivery_enqueue(
        kind=Delivery.Kind.ANNOUNCE, source_session_key=announce.source_session_key,
        source_run_id=announce.source_run_id, target_session_key=announce.target_session_key,
        target_run_id=target_run_id, payload=payload, idempotency_key=announce.idempotency_key,
    )  # fmt: skip
    return delivery


# --- the queue/steer primitive ---------------------------------------------------------------


def _queue_or_steer(announce: Announce, *, phases: list[str]) -> Placement | None:
    session = Session.objects.select_for_update().filter(key=announce.target_session_key).first()
    if session is None:
        return None
    active = Run.objects.filter(session=session, status=Run.Status.RUNNING).order_by("started_at").first()
    if active is None:
        return None
    settings = queue_settings(session=session)
    if settings.mode in (STEER, STEER_BACKLOG):
        delivery = _enqueue(announce, target_run_id=active.run_id, path=STEERED, phases=phases)
        return Placement(path=STEERED, delivery=delivery, phases=phases)
    return _queue(announce, session=session, settings=settings, phases=phases)


def _queue(announce: Announce, *, session: Session, settings: QueueSettings, phases: list[str]) -> Placement:
    queued = list(queued_announces(session=session))
    overflow = len(queued) - settings.cap + 1 if settings.cap >= 1 else 0
    reason = f"dropped: announce queue full (cap {settings.cap}, drop {settings.drop})"
    if overflow > 0 and settings.drop == "new":
        return Placement(path=DROPPED, delivery=None, phases=phases, reason=reason)
    summarize = settings.drop == "summarize"
    dropped = [(d, reason, summarize) for d in queued[: max(overflow, 0)]]
    carried = [line for delivery, _, _ in dropped for line in _drop(delivery, reason)]
    run = _queue_run(session, collect=settings.mode == COLLECT)
    lines = carried + ([d.payload.get("summaryLine") or d.delivery_id for d, _, _ in dropped] if summarize else [])
    if lines:
        _add_summary(_next_queue_run(session) or run, lines)
    delivery = _enqueue(announce, target_run_id=run.run_id, path=QUEUED, phases=phases)
    _debounce(session, settings)
    return Placement(path=QUEUED, delivery=delivery, phases=phases, dropped=dropped)


def queued_announces(*, session: Session):
    """Open announces waiting in the session's announce queue, oldest first."""
    runs = _queue_runs(session).values("run_id")
    return Delivery.objects.filter(kind=Delivery.Kind.ANNOUNCE, state__in=OPEN_STATES,
                                   target_run_id__in=runs).order_by("created_at", "id")  # fmt: skip


def _queue_runs(session: Session):
    return Run.objects.filter(session=session, status=Run.Status.QUEUED, input__queueMode=ANNOUNCE_QUEUE)


def _next_queue_run(session: Session) -> Run | None:
    return _queue_runs(session).order_by("created_at", "id").first()


def _queue_run(session: Session, *, collect: bool) -> Run:
    """The queued turn the announce waits in: in collect mode the session's one batch turn,
    otherwise a turn of its own."""
    if collect:
        existing = _queue_runs(session).filter(input__announceQueue__mode=COLLECT).order_by("created_at").first()
        if existing is not None:
            return existing
    run, _ = run_enqueue(
        session=session, agent_id=session.agent_id, kind=Run.Kind.ANNOUNCE,
        run_id=f"announce-queue:{uuid.uuid4().hex}",
        input={"message": "", "source": "delivery", "kind": Delivery.Kind.ANNOUNCE, "queueMode": ANNOUNCE_QUEUE,
               "announceQueue": {"mode": COLLECT if collect else "followup", "droppedSummary": []}},
    )  # fmt: skip
    return run


def _add_summary(run: Run, lines: list[str]) -> None:
    queue = dict(run.input.get("announceQueue") or {})
    queue["droppedSummary"] = [*queue.get("droppedSummary", []), *lines]
    run.input = {**run.input, "announceQueue": queue}
    Run.objects.filter(pk=run.pk).update(input=run.input)


def _drop(delivery: Delivery, reason: str) -> list[str]:
    """Take a queued announce out of the queue, and its turn when nothing else waits in it;
    returns the summary lines that turn carried (they move to the next queued turn)."""
    Delivery.objects.filter(pk=delivery.pk, state__in=OPEN_STATES).update(
        state=Delivery.State.FAILED, last_error=reason, sender_notified=True
    )
    run = Run.objects.filter(run_id=delivery.target_run_id, status=Run.Status.QUEUED).first()
    if run is None or Delivery.objects.filter(target_run_id=run.run_id, state__in=OPEN_STATES).exists():
        return []
    run_abort(run=run, reason=reason)
    return list((run.input.get("announceQueue") or {}).get("droppedSummary") or [])


def _debounce(session: Session, settings: QueueSettings) -> None:
    """The queue drains ``debounceMs`` after the last enqueue."""
    not_before = timezone.now() + dt.timedelta(milliseconds=settings.debounce_ms)
    _queue_runs(session).update(not_before=not_before)


# --- what the queued turn reads ------------------------------------------------------------


def announce_batch_text(*, run: Run, texts: list[str]) -> str | None:
    """The one prompt of a queued announce turn: the collect title, the summary of the
    announces dropped to make room, then the announces (None for other runs)."""
    queue = run.input.get("announceQueue")
    if not queue:
        return None
    parts = []
    if queue.get("mode") == COLLECT:
        parts.append(BATCH_TITLE)
    dropped = queue.get("droppedSummary") or []
    if dropped:
        lines = "\n".join(f"- {line}" for line in dropped)
        parts.append(f"[{len(dropped)} queued announce(s) dropped while agent was busy]\n{lines}")
    parts.extend(texts)
    return "\n\n---\n\n".join(parts) if len(parts) > 1 else (parts[0] if parts else "")

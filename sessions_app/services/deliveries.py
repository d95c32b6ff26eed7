"""Inter-session delivery: every message between sessions is a durable ``Delivery`` row.

States: ``pending`` (stored, not yet handed to a turn) → ``delivered`` (a turn of the
target is responsible for it: the live turn, which reads it at its next model step, or
a turn started for it) → ``consumed`` (it is in a run's model context:
``consumed_by_run_id``). A delivery that cannot be handed over after ``max_attempts``
becomes ``failed``, one past ``expires_at`` becomes ``expired``; either way the sender is
told with a visible notice (a delivery back to it). The idempotency key is unique in
the database, so a replayed enqueue returns the row already written.

Addressing: a delivery bound to a run (``target_run_id``, or a run-scoped key
``…:run:<id>``) is read by that run while it is live; once that run has ended it falls
back to the durable session (a run-scoped key loses its ``:run:<id>`` suffix), where
the next turn reads it; an idle target gets a new turn (``Run`` of kind ``delivery``,
``a2a`` or ``announce``) started for it. See ``docs/delivery.md``.

The maintenance job calls :func:`delivery_sweep`; operators call :func:`delivery_retry`.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from cron_app.maintenance import maintenance_sweep
from openclaw_site.errors import InvalidRequestError, NotFoundError

from ..models import Delivery, Run, Session
from .run_hooks import on_run_finished

logger = logging.getLogger(__name__)

_RUN_SCOPED_RE = re.compile(r"^(?P<base>.+):run:(?P<run>[^:]+)$")
OPEN_STATES = (Delivery.State.PENDING, Delivery.State.DELIVERED)
ACTIVE_RUN_STATES = (Run.Status.QUEUED, Run.Status.RUNNING)
RUN_KIND_FOR = {
    Delivery.Kind.SEND: Run.Kind.A2A,
    Delivery.Kind.A2A: Run.Kind.A2A,
    Delivery.Kind.ANNOUNCE: Run.Kind.ANNOUNCE,
    Delivery.Kind.PINGBACK: Run.Kind.DELIVERY,
    Delivery.Kind.FOLLOWUP: Run.Kind.DELIVERY,
    Delivery.Kind.REPLY: Run.Kind.DELIVERY,
}
# How long a handed-over delivery may wait for its turn before the sweep retries it
# (only when no turn of the target is live), growing per attempt.
BACKOFF_S = (5, 15, 60, 300, 900)
REPLY_GRACE_S = 10  # let the run-finished hooks link a reply before the sweep does
FAILED_NOTICE = "⚠️ Message could not be delivered to {target}: {reason}"


class DeliveryNotFoundError(NotFoundError):
    def __init__(self, delivery_id: str) -> None:
        super().__init__(
            f"delivery not found: {delivery_id}", details={"code": "DELIVERY_NOT_FOUND", "deliveryId": delivery_id}
        )


class DeliveryNotRetryableError(InvalidRequestError):
    def __init__(self, delivery_id: str, state: str) -> None:
        super().__init__(
            f"only a failed delivery can be retried: {delivery_id} is {state}",
            details={"code": "DELIVERY_NOT_RETRYABLE", "deliveryId": delivery_id, "state": state},
        )


# --- addressing ---------------------------------------------------------------------


def split_run_scoped_key(key: str) -> tuple[str, str] | None:
    """``(durable parent key, run id)`` of a run-scoped key ``…:run:<id>``, else None."""
    match = _RUN_SCOPED_RE.match(key or "")
    if not match or not match["base"].startswith("agent:"):
        return None
    return match["base"], match["run"]


@dataclass(frozen=True)
class Route:
    """Where a delivery is read: ``session_key`` and, while it is live, ``run_id``."""

    session_key: str
    run_id: str | None
    rerouted: bool = False


def _live_run(*, session_key: str, run_id: str | None) -> Run | None:
    active = Run.objects.filter(status__in=ACTIVE_RUN_STATES)
    if run_id:
        run = active.filter(run_id=run_id).first()
        if run is not None:
            return run
    if split_run_scoped_key(session_key):
        return active.filter(session_key=session_key).order_by("created_at").first()
    return None


def delivery_route(*, target_session_key: str, target_run_id: str | None = None) -> Route:
    """Resolve the reader of a message: the live run it is bound to, or the durable session.

    A run-scoped key whose run has ended falls back to its parent key (seed 002).
    """
    scoped = split_run_scoped_key(target_session_key)
    if not target_run_id and not scoped:
        return Route(session_key=target_session_key, run_id=None)
    run = _live_run(session_key=target_session_key, run_id=target_run_id or (scoped[1] if scoped else None))
    if run is not None:
        return Route(session_key=run.session_key or target_session_key, run_id=run.run_id)
    if scoped:
        return Route(session_key=scoped[0], run_id=None, rerouted=True)
    return Route(session_key=target_session_key, run_id=None, rerouted=bool(target_run_id))


def session_has_live_turn(*, session_key: str) -> bool:
    return Run.objects.filter(session_key=session_key, status__in=ACTIVE_RUN_STATES).exists()


# --- enqueue and hand-over ----------------------------------------------------------


def delivery_enqueue(
    *,
    kind: str,
    source_session_key: str,
    source_run_id: str | None,
    target_session_key: str,
    target_run_id: str | None = None,
    payload: dict[str, Any],
    idempotency_key: str,
    max_attempts: int = 5,
    expires_at: datetime | None = None,
) -> tuple[Delivery, bool]:
    """Store a message for another session, exactly once per ``idempotency_key``.

    The row is written in the caller's transaction; after it commits the message is
    handed over (:func:`delivery_dispatch`). Returns ``(delivery, created)``.
    """
    existing = Delivery.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            delivery = Delivery.objects.create(
                kind=kind, source_session_key=source_session_key or "", source_run_id=source_run_id,
                target_session_key=target_session_key, target_run_id=target_run_id, payload=payload,
                idempotency_key=idempotency_key, max_attempts=max_attempts, expires_at=expires_at,
            )  # fmt: skip
    except IntegrityError:
        return Delivery.objects.get(idempotency_key=idempotency_key), False
    delivery_id = delivery.delivery_id
    transaction.on_commit(lambda: _dispatch_quietly(delivery_id), robust=True)
    return delivery, True


def _dispatch_quietly(delivery_id: str) -> None:
    try:
        delivery_dispatch(delivery_id=delivery_id)
    except Exception:  # the sweep retries; the row is durable
        logger.exception("dispatch of delivery %s failed; the sweep will retry", delivery_id)


def delivery_dispatch(*, delivery_id: str) -> Delivery:
    """Hand an open delivery to a turn of its target (idempotent; one attempt).

    Re-resolves the route (a bound run that ended falls back to the durable session),
    then leaves it to the live turn of the target or starts a turn for it.
    """
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(delivery_id=delivery_id)
        if delivery.state not in OPEN_STATES:
            return delivery
        if delivery.expires_at and delivery.expires_at <= timezone.now():
            _expire(delivery)
            return delivery
        _apply_route(delivery)
        _hand_over(delivery)
    return delivery


def _apply_route(delivery: Delivery) -> None:
    route = delivery_route(target_session_key=delivery.target_session_key, target_run_id=delivery.target_run_id)
    if route.session_key != delivery.target_session_key or route.run_id != delivery.target_run_id:
        history = list(delivery.payload.get("routes") or [])
        history.append({"from": delivery.target_session_key, "fromRunId": delivery.target_run_id,
                        "to": route.session_key, "at": timezone.now().isoformat()})  # fmt: skip
        delivery.payload = {**delivery.payload, "routes": history}
        delivery.target_session_key, delivery.target_run_id = route.session_key, route.run_id


def _hand_over(delivery: Delivery) -> None:
    from .runs import run_enqueue
    from .sessions import session_ensure

    now = timezone.now()
    session, _ = session_ensure(key=delivery.target_session_key)
    if not (delivery.target_run_id or session_has_live_turn(session_key=session.key)):
        run_enqueue(
            session=session, agent_id=session.agent_id, kind=RUN_KIND_FOR.get(delivery.kind, Run.Kind.DELIVERY),
            input=_turn_input(delivery), run_id=f"delivery:{delivery.delivery_id}:{uuid.uuid4().hex[:12]}",
            source_session_key=delivery.source_session_key or None, parent_run_id=delivery.source_run_id,
        )  # fmt: skip
    delivery.attempts += 1
    delivery.state = Delivery.State.DELIVERED
    delivery.delivered_at = now
    delivery.next_attempt_at = now + timedelta(seconds=BACKOFF_S[min(delivery.attempts, len(BACKOFF_S)) - 1])
    delivery.save(update_fields=["attempts", "state", "delivered_at", "next_attempt_at", "payload",
                                 "target_session_key", "target_run_id"])  # fmt: skip


def _turn_input(delivery: Delivery) -> dict[str, Any]:
    """A turn started for a delivery: the message itself reaches it through the inbox."""
    turn_input = {"message": "", "deliveryId": delivery.delivery_id, "source": "delivery", "kind": delivery.kind}
    if delivery.payload.get("extraSystemPrompt"):
        turn_input["extraSystemPrompt"] = delivery.payload["extraSystemPrompt"]
    return turn_input


def delivery_enqueue_with_turn(
    *,
    kind: str,
    source_session_key: str,
    target_session_key: str,
    payload: dict[str, Any],
    idempotency_key: str,
    run_id: str,
    run_kind: str = Run.Kind.A2A,
    timeout_s: int | None = None,
) -> tuple[Delivery, Run]:
    """Store a message together with the turn of its own that reads it (idempotent).

    For steps that must not be read by whatever turn happens to be live (agent-to-agent
    reply and announce steps): the text is the new run's input, so the row is consumed
    by that run from the start and its final text becomes the reply.
    """
    existing = Delivery.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing, Run.objects.get(run_id=existing.consumed_by_run_id)
    try:
        return _enqueue_with_turn(kind=kind, source_session_key=source_session_key,
                                  target_session_key=target_session_key, payload=payload,
                                  idempotency_key=idempotency_key, run_id=run_id, run_kind=run_kind,
                                  timeout_s=timeout_s)  # fmt: skip
    except IntegrityError:
        existing = Delivery.objects.get(idempotency_key=idempotency_key)
        return existing, Run.objects.get(run_id=existing.consumed_by_run_id)


def _enqueue_with_turn(*, kind, source_session_key, target_session_key, payload, idempotency_key, run_id,
                       run_kind, timeout_s) -> tuple[Delivery, Run]:
    from .runs import run_enqueue
    from .sessions import session_ensure

    now = timezone.now()
    with transaction.atomic():
        session, _ = session_ensure(key=target_session_key)
        provenance = {"kind": "inter_session", "deliveryKind": kind, "sourceSessionKey": source_session_key or None,
                      "sourceTool": payload.get("sourceTool")}  # fmt: skip
        run, _ = run_enqueue(
            session=session, agent_id=session.agent_id, kind=run_kind, run_id=run_id, timeout_s=timeout_s,
            input={"message": payload.get("text") or "", "source": "delivery", "kind": kind,
                   "inputProvenance": provenance},
            source_session_key=source_session_key or None,
        )  # fmt: skip
        delivery = Delivery.objects.create(
            kind=kind, source_session_key=source_session_key or "", target_session_key=session.key,
            target_run_id=run.run_id, payload=payload, idempotency_key=idempotency_key, state=Delivery.State.CONSUMED,
            attempts=1, delivered_at=now, consumed_at=now, consumed_by_run_id=run.run_id,
        )  # fmt: skip
        Run.objects.filter(pk=run.pk).update(input={**run.input, "deliveryId": delivery.delivery_id,
                                                    "inputProvenance": {**provenance, "deliveryId": delivery.delivery_id}})
    return delivery, run


# --- failure, expiry, retry ---------------------------------------------------------


def delivery_mark_failed(*, delivery: Delivery, reason: str) -> Delivery:
    """Give up on a delivery: state ``failed`` and a visible notice to its sender."""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
        if delivery.state not in OPEN_STATES:
            return delivery
        delivery.state = Delivery.State.FAILED
        delivery.last_error = reason
        delivery.save(update_fields=["state", "last_error"])
        _notify_sender(delivery, reason)
    return delivery


def _expire(delivery: Delivery) -> None:
    delivery.state = Delivery.State.EXPIRED
    delivery.last_error = delivery.last_error or "expired before it was read"
    delivery.save(update_fields=["state", "last_error"])
    _notify_sender(delivery, "expired before it was read")


def _notify_sender(delivery: Delivery, reason: str) -> None:
    """Tell the sender, once, with a delivery back to it (never a notice about a notice)."""
    if delivery.sender_notified or not delivery.source_session_key or delivery.payload.get("notice"):
        return
    if delivery.kind == Delivery.Kind.ANNOUNCE:
        return  # the announce feature tells the requester itself (services.announce)
    text = FAILED_NOTICE.format(target=delivery.target_session_key, reason=reason)
    delivery_enqueue(
        kind=Delivery.Kind.REPLY, source_session_key=delivery.target_session_key, source_run_id=None,
        target_session_key=delivery.source_session_key, target_run_id=delivery.source_run_id,
        payload={"text": text, "notice": "delivery_failed", "deliveryId": delivery.delivery_id,
                 "state": delivery.state},
        idempotency_key=f"delivery-notice:v1:{delivery.delivery_id}",
    )  # fmt: skip
    Delivery.objects.filter(pk=delivery.pk).update(sender_notified=True)
    delivery.sender_notified = True


def delivery_retry(*, delivery: Delivery) -> Delivery:
    """Put a ``failed`` (or ``expired``) delivery back in the queue: ``pending``, attempts
    reset, due now, and hand it over again after commit.

    The sender was already told about the failure, so ``sender_notified`` stays as it is
    (a second failure does not notify twice). Any other state raises
    :class:`DeliveryNotRetryableError` and changes nothing.
    """
    now = timezone.now()
    with transaction.atomic():
        # Conditional update: the dispatcher may touch the row at the same moment.
        retried = Delivery.objects.filter(
            pk=delivery.pk, state__in=(Delivery.State.FAILED, Delivery.State.EXPIRED)
        ).update(state=Delivery.State.PENDING, attempts=0, next_attempt_at=now, last_error="")
        if retried:
            Delivery.objects.filter(pk=delivery.pk, expires_at__lte=now).update(expires_at=None)
            delivery_id = delivery.delivery_id
            transaction.on_commit(lambda: _dispatch_quietly(delivery_id), robust=True)
    delivery.refresh_from_db()
    if not retried:
        raise DeliveryNotRetryableError(delivery.delivery_id, delivery.state)
    return delivery


def delivery_sweep(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Maintenance: expire old deliveries, re-hand-over due ones, fail exhausted ones, and
    link the replies of runs that ended without their hooks.

    A delivery whose target still has a live turn is not charged an attempt (a long
    tool wait is not a failed hand-over). Returns counts by outcome.
    """
    now = now or timezone.now()
    counts = {"expired": 0, "retried": 0, "failed": 0, "waiting": 0, "replied": 0}
    for delivery in Delivery.objects.filter(state__in=OPEN_STATES, expires_at__lte=now)[:limit]:
        with transaction.atomic():
            _expire(Delivery.objects.select_for_update().get(pk=delivery.pk))
        counts["expired"] += 1
    due = Delivery.objects.filter(state__in=OPEN_STATES).filter(
        Q(next_attempt_at__lte=now) | Q(next_attempt_at__isnull=True, created_at__lte=now - timedelta(seconds=2))
    )
    for delivery in due.order_by("created_at")[:limit]:
        counts[_sweep_one(delivery, now)] += 1
    counts["replied"] = _sweep_replies(now, limit)
    return counts


def _sweep_replies(now: datetime, limit: int) -> int:
    """Replies whose run ended without its hooks (the process died right after the end)."""
    linked = 0
    grace = now - timedelta(seconds=REPLY_GRACE_S)
    stale = Delivery.objects.filter(state=Delivery.State.CONSUMED, reply__isnull=True, consumed_at__lte=grace)
    for delivery in stale.order_by("consumed_at")[:limit]:
        run = Run.objects.filter(run_id=delivery.consumed_by_run_id, status__in=Run.TERMINAL, ended_at__lte=grace).first()
        if run is not None:
            _link_reply(delivery, run)
            linked += 1
    return linked


@maintenance_sweep("sessions.deliveries")
def _maintenance(now: datetime) -> int:
    counts = delivery_sweep(now=now)
    return counts["expired"] + counts["retried"] + counts["failed"] + counts["replied"]


def _sweep_one(delivery: Delivery, now: datetime) -> str:
    route = delivery_route(target_session_key=delivery.target_session_key, target_run_id=delivery.target_run_id)
    if delivery.state == Delivery.State.DELIVERED and not route.rerouted and session_has_live_turn(
        session_key=route.session_key
    ):
        Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=now + timedelta(seconds=BACKOFF_S[0]))
        return "waiting"
    if delivery.attempts >= delivery.max_attempts:
        delivery_mark_failed(delivery=delivery, reason=f"not read after {delivery.attempts} attempts")
        return "failed"
    delivery_dispatch(delivery_id=delivery.delivery_id)
    return "retried"


# --- reading (the engine's inbox) and replies ---------------------------------------


def deliveries_readable_by(*, session_key: str, run_id: str):
    """Open deliveries the run may read now: addressed to its session, unbound or bound to it."""
    return Delivery.objects.filter(
        Q(target_run_id__isnull=True) | Q(target_run_id=run_id), target_session_key=session_key, state__in=OPEN_STATES
    ).order_by("created_at", "id")


def delivery_consume(*, delivery: Delivery, run_id: str) -> bool:
    """Mark one open delivery consumed by ``run_id``; False if another run got it first."""
    now = timezone.now()
    updated = Delivery.objects.filter(pk=delivery.pk, state__in=OPEN_STATES).update(
        state=Delivery.State.CONSUMED, consumed_by_run_id=run_id, consumed_at=now, delivered_at=delivery.delivered_at or now
    )
    return updated == 1


# Features that want to react to a reply (agent-to-agent flow, pingbacks) register here.
_REPLY_LISTENERS: list[Callable[[Delivery, Run], None]] = []


def on_delivery_reply(fn: Callable[[Delivery, Run], None]) -> Callable[[Delivery, Run], None]:
    """Decorator: call ``fn(delivery, run)`` after a consumed delivery's reply is recorded."""
    if fn not in _REPLY_LISTENERS:
        _REPLY_LISTENERS.append(fn)
    return fn


def run_final_text(run: Run) -> str:
    """The final assistant text of a finished run."""
    output = run.output or {}
    text = output.get("text") if isinstance(output, dict) else None
    if isinstance(text, str):
        return text
    from ..models import TranscriptEntry

    entry = (
        TranscriptEntry.objects.filter(run_id=run.run_id, role=TranscriptEntry.Role.ASSISTANT).order_by("-seq").first()
    )
    return entry.text if entry else ""


def delivery_record_reply(*, delivery: Delivery, run: Run) -> bool:
    """Record the consuming run's outcome as the delivery's reply (once); True if recorded now."""
    reply = {"text": run_final_text(run), "runId": run.run_id, "status": run.status, "error": run.error,
             "at": timezone.now().isoformat()}  # fmt: skip
    updated = Delivery.objects.filter(pk=delivery.pk, reply__isnull=True).update(reply=reply)
    if updated:
        delivery.refresh_from_db()
    return updated == 1


def _link_reply(delivery: Delivery, run: Run) -> None:
    if delivery_record_reply(delivery=delivery, run=run):
        for listener in list(_REPLY_LISTENERS):
            try:
                listener(delivery, run)
            except Exception:
                logger.exception("reply listener %s failed for delivery %s", listener, delivery.delivery_id)


@on_run_finished()
def _deliveries_after_run(run: Run) -> None:
    """When a run ends: link replies, then re-route what it left unread."""
    for delivery in Delivery.objects.filter(consumed_by_run_id=run.run_id, reply__isnull=True):
        _link_reply(delivery, run)
    leftovers = Delivery.objects.filter(state__in=OPEN_STATES).filter(
        Q(target_run_id=run.run_id) | Q(target_session_key=run.session_key, target_run_id__isnull=True)
    )
    for delivery in leftovers.order_by("created_at"):
        _dispatch_quietly(delivery.delivery_id)


# --- selectors ------------------------------------------------------------------------


def delivery_get(*, delivery_id: str) -> Delivery:
    delivery = Delivery.objects.filter(delivery_id=delivery_id).first()
    if delivery is None:
        raise DeliveryNotFoundError(delivery_id)
    return delivery


def delivery_list(*, state: str | None = None, session_key: str | None = None, limit: int = 100):
    """Deliveries newest first, by state and/or a session on either end."""
    qs = Delivery.objects.all()
    if state:
        qs = qs.filter(state=state)
    if session_key:
        qs = qs.filter(Q(target_session_key=session_key) | Q(source_session_key=session_key))
    return qs.order_by("-created_at", "-id")[:limit]


def session_exists(key: str) -> bool:
    return Session.objects.filter(key=key).exists()

"""The inbox of a running turn: what reached the session since its last model step.

:func:`inbox_drain` runs before every model step. In one transaction it takes the
session's pending system events (rendered ``System: [<ISO timestamp>] <text>``) and the
pending/delivered ``Delivery`` rows addressed to it, records them in the transcript and
marks them consumed by the run, so an item is seen by exactly one model step. A turn of
the announce queue reads its announces as one prompt (``services.announce_queue``).
"""

from __future__ import annotations

from datetime import timezone as dt_timezone
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..events import event_batch
from ..models import Delivery, Run, Session, SystemEvent
from .announce_queue import announce_batch_text
from .sessions import transcript_append

SYSTEM_EVENTS_SOURCE = "system_events"


def render_system_line(event: SystemEvent) -> str:
    """``System: [<ISO timestamp>] <text>`` (UTC, second precision)."""
    stamp = event.created_at.astimezone(dt_timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    return f"System: [{stamp}] {event.text.strip()}"


def inbox_drain(*, session: Session, run: Run) -> list[dict[str, Any]]:
    """Consume pending system events and deliveries of ``session`` for ``run``.

    Returns the chat messages added to the context (also appended to the transcript):
    one ``user`` message holding every ``System:`` line, then one per delivery.
    """
    with event_batch():
        messages = _drain_system_events(session, run)
        messages += _drain_deliveries(session, run)
    return messages


def _drain_system_events(session: Session, run: Run) -> list[dict[str, Any]]:
    events = list(SystemEvent.objects.pending().for_session(session.key).select_for_update().order_by("created_at", "id"))
    if not events:
        return []
    text = "\n".join(render_system_line(event) for event in events)
    ids = [event.pk for event in events]
    SystemEvent.objects.filter(pk__in=ids).update(consumed_at=timezone.now(), consumed_by_run_id=run.run_id)
    transcript_append(
        session=session, role="system", content=text, run_id=run.run_id,
        provenance={"kind": SYSTEM_EVENTS_SOURCE, "systemEventIds": ids},
    )  # fmt: skip
    return [{"role": "user", "content": text, "provenance": {"kind": SYSTEM_EVENTS_SOURCE}}]


def _drain_deliveries(session: Session, run: Run) -> list[dict[str, Any]]:
    states = (Delivery.State.PENDING, Delivery.State.DELIVERED)
    # Unbound deliveries, or those bound to this run (deliveries.deliveries_readable_by).
    readable = Delivery.objects.for_target(session.key).filter(Q(target_run_id__isnull=True) | Q(target_run_id=run.run_id))
    rows = list(readable.filter(state__in=states).select_for_update().order_by("created_at", "id"))
    messages = []
    batch = [d for d in rows if d.kind == Delivery.Kind.ANNOUNCE and d.target_run_id == run.run_id]
    batch_text = announce_batch_text(run=run, texts=[_delivery_text(d) for d in batch]) if batch else None
    if batch_text is not None:
        provenance = {"kind": "inter_session", "deliveryKind": Delivery.Kind.ANNOUNCE, "announceQueue": True,
                      "deliveryIds": [d.delivery_id for d in batch]}  # fmt: skip
        transcript_append(session=session, role="user", content=batch_text, run_id=run.run_id, provenance=provenance)
        messages.append({"role": "user", "content": batch_text, "provenance": provenance})
    for delivery in rows:
        if batch_text is not None and delivery in batch:
            continue
        provenance = {
            "kind": "inter_session", "deliveryId": delivery.delivery_id, "deliveryKind": delivery.kind,
            "sourceSessionKey": delivery.source_session_key, "sourceRunId": delivery.source_run_id,
        }  # fmt: skip
        text = _delivery_text(delivery)
        transcript_append(session=session, role="user", content=text, run_id=run.run_id, provenance=provenance)
        messages.append({"role": "user", "content": text, "provenance": provenance})
    if rows:
        now = timezone.now()
        Delivery.objects.filter(pk__in=[d.pk for d in rows]).update(
            state=Delivery.State.CONSUMED, consumed_at=now, consumed_by_run_id=run.run_id
        )
    return messages


def _delivery_text(delivery: Delivery) -> str:
    payload = delivery.payload or {}
    text = payload.get("text") or payload.get("message")
    if isinstance(text, str) and text.strip():
        return text
    import json

    return json.dumps(payload, ensure_ascii=False)

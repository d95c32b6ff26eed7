"""Gateway events: group names and the one door events leave through.

Events are published only after the transaction that caused them commits
(``transaction.on_commit``), so a client never sees state that rolls back. Events of a
session carry that session's sequence number (``Session.event_seq``) and are kept in
``SessionEvent`` for a while, so a client that reconnects can ask for what it missed.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F

logger = logging.getLogger(__name__)

SESSIONS_GROUP = "gw.sessions"  # sessions.changed subscribers
BROADCAST_GROUP = "gw.all"  # every authenticated connection (tick, shutdown, health, heartbeat…)
ENGINE_GROUP = "gw.engine"  # run engines: "a run is queued"


def session_group(session_key: str) -> str:
    """Group of one session's events (chat, agent, session.message)."""
    digest = hashlib.sha1(session_key.encode()).hexdigest()[:32]
    return f"gw.s.{digest}"


def now_ms() -> int:
    return int(time.time() * 1000)


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # the layer is best effort; the database is the source of truth
        logger.exception("channel layer send to %s failed", group)


def publish_on_commit(group: str, event: str, payload: dict[str, Any], *, seq: int | None = None) -> None:
    """Send ``event`` to ``group`` once the current transaction commits."""
    message = {"type": "gateway.event", "event": event, "payload": payload}
    if seq is not None:
        message["sessionSeq"] = seq
    transaction.on_commit(lambda: _send(group, message))


def publish_session_event(session, event: str, payload: dict[str, Any]) -> int:
    """Number, store and (after commit) publish one event of ``session``; returns its seq."""
    from .models import Session, SessionEvent

    with transaction.atomic():
        Session.objects.filter(pk=session.pk).update(event_seq=F("event_seq") + 1)
        seq = Session.objects.filter(pk=session.pk).values_list("event_seq", flat=True).get()
        payload = {**payload, "sessionSeq": seq}
        SessionEvent.objects.create(session=session, session_key=session.key, seq=seq, event=event, payload=payload)
        publish_on_commit(session_group(session.key), event, payload, seq=seq)
    session.event_seq = seq
    return seq


def notify_engines(run_id: str) -> None:
    """Tell run engines (after commit) that ``run_id`` is queued; they also poll."""
    transaction.on_commit(lambda: _send(ENGINE_GROUP, {"type": "engine.wakeup", "runId": run_id}))

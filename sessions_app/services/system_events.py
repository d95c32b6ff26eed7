"""The durable ``System:`` line queue of each session (spec-a §4.1, as rows).

OpenClaw keeps this queue in process memory and loses it on restart; here every event
is a :class:`~sessions_app.models.SystemEvent` row until a run consumes it. The rules
are OpenClaw's: text trimmed, empty ignored, an event identical to the previous pending
one of the session dropped, at most :data:`MAX_PENDING` pending per session (the oldest
go first), context keys trimmed and lowercased (``cron:<jobId>`` events vanish when the
job is removed). The run engine drains the queue (``sessions_app/services/inbox.py``).
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet

from openclaw_site.errors import InvalidRequestError

from ..models import Session, SystemEvent

MAX_PENDING = 20


def system_event_enqueue(
    *,
    session_key: str,
    agent_id: str,
    text: str,
    context_key: str | None = None,
    origin: str = "",
) -> SystemEvent | None:
    """Queue ``text`` for the next model step of ``session_key`` (a canonical store key).

    Returns the new row, or None when the text is empty or repeats the previous pending
    event of the session. Raises ``INVALID_REQUEST`` without a session key.
    """
    session_key = (session_key or "").strip()
    if not session_key:
        raise InvalidRequestError("system events require a sessionKey")
    text = (text or "").strip()
    if not text:
        return None
    with transaction.atomic():
        _lock_session(session_key)
        last = SystemEvent.objects.pending().for_session(session_key).order_by("-created_at", "-id").first()
        if last is not None and last.text == text:
            return None
        event = SystemEvent.objects.create(
            session_key=session_key, agent_id=agent_id, text=text,
            context_key=_normalize_context_key(context_key), origin=origin or "",
        )  # fmt: skip
        _drop_over_cap(session_key)
    return event


def system_events_drop_by_context_key(*, context_key: str) -> int:
    """Delete the pending events of every session tagged ``context_key``; returns how many."""
    key = _normalize_context_key(context_key)
    if key is None:
        return 0
    deleted, _ = SystemEvent.objects.pending().filter(context_key=key).delete()
    return deleted


def system_event_list(*, session_key: str, include_consumed: bool = False) -> QuerySet[SystemEvent]:
    """The events of a session, oldest first; pending only unless ``include_consumed``."""
    events = SystemEvent.objects.for_session((session_key or "").strip())
    return events if include_consumed else events.pending()


def system_events_pending_count(*, session_key: str) -> int:
    return SystemEvent.objects.pending().for_session(session_key).count()


def _normalize_context_key(value: str | None) -> str | None:
    return (value or "").strip().lower() or None


def _lock_session(session_key: str) -> None:
    # Serialises enqueues of one session (duplicate check and cap) on PostgreSQL; SQLite
    # runs writers one at a time anyway. A session without a row yet has nothing to lock.
    list(Session.objects.select_for_update().filter(key=session_key).values_list("pk", flat=True))


def _drop_over_cap(session_key: str) -> None:
    pending = SystemEvent.objects.pending().for_session(session_key).order_by("-created_at", "-id")
    stale = list(pending.values_list("pk", flat=True)[MAX_PENDING:])
    if stale:
        SystemEvent.objects.filter(pk__in=stale).delete()

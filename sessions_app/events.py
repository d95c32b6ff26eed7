"""Gateway events: group names and the one door events leave through.

Events are published only after the transaction that caused them commits
(``transaction.on_commit``), so a client never sees state that rolls back. Events of a
session carry that session's sequence number (``Session.event_seq``) and are kept in
``SessionEvent`` for a while, so a client that reconnects can ask for what it missed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import os
import threading
import time
import weakref
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction

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


def layer_send(group: str, message: dict[str, Any]) -> None:
    """Hand ``message`` to the channel layer without waiting for it.

    Called from a thread that an event loop lent its work to (``sync_to_async``), the
    message goes to that loop's :class:`_Publisher` and this thread goes on at once: a
    database thread that waited for the loop at every event would serialize the whole
    gateway behind it. Elsewhere (a django-q2 worker, a management command) it is sent
    here and now."""
    layer = get_channel_layer()
    if layer is None:
        return
    loop = _lending_loop()
    if loop is not None:
        try:
            loop.call_soon_threadsafe(_submit, loop, layer, group, message)
            return
        except RuntimeError:  # the loop closed meanwhile
            pass
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # the layer is best effort; the database is the source of truth
        logger.exception("channel layer send to %s failed", group)


def _lending_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop whose ``sync_to_async`` call this thread is serving."""
    local = SyncToAsync.threadlocal
    loop = getattr(local, "main_event_loop", None)
    if loop is None or getattr(local, "main_event_loop_pid", None) != os.getpid():
        return None
    return loop if loop.is_running() and not loop.is_closed() else None


class _Publisher:
    """Sends one loop's events in order per group, groups concurrently (a slow Redis
    round trip for one session does not hold up the others)."""

    def __init__(self) -> None:
        self._queues: dict[str, collections.deque] = {}
        self._tasks: set[asyncio.Task] = set()

    def submit(self, layer, group: str, message: dict[str, Any]) -> None:
        queue = self._queues.get(group)
        if queue is not None:
            queue.append(message)
            return
        self._queues[group] = collections.deque([message])
        task = asyncio.get_running_loop().create_task(self._drain(layer, group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, layer, group: str) -> None:
        queue = self._queues[group]
        try:
            while queue:
                message = queue.popleft()
                try:
                    await layer.group_send(group, message)
                except Exception:  # best effort, as above
                    logger.exception("channel layer send to %s failed", group)
        finally:
            self._queues.pop(group, None)


_publishers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _submit(loop: asyncio.AbstractEventLoop, layer, group: str, message: dict[str, Any]) -> None:
    """On ``loop``'s thread: one publisher per loop, so one order per group."""
    publisher = _publishers.get(loop)
    if publisher is None:
        publisher = _publishers[loop] = _Publisher()
    publisher.submit(layer, group, message)


def publish_on_commit(group: str, event: str, payload: dict[str, Any], *, seq: int | None = None) -> None:
    """Send ``event`` to ``group`` once the current transaction commits."""
    message = {"type": "gateway.event", "event": event, "payload": payload}
    if seq is not None:
        message["sessionSeq"] = seq
    transaction.on_commit(lambda: layer_send(group, message))


def publish_session_event(session, event: str, payload: dict[str, Any]) -> int:
    """Number, store and (after commit) publish one event of ``session``; returns its seq.

    Inside :func:`event_batch` (at the batch's own transaction level) the row is written
    with the batch's others when it ends; anywhere else, now."""
    batch = getattr(_batches, "current", None)
    if batch is not None and batch.depth == len(connection.savepoint_ids):
        seq = _bump_event_seq(session.pk)
        payload = {**payload, "sessionSeq": seq}
        batch.add(session, seq, event, payload)
    else:  # no batch, or a savepoint inside one (it may roll back on its own): the row now
        from .models import SessionEvent

        with transaction.atomic():
            seq = _bump_event_seq(session.pk)
            payload = {**payload, "sessionSeq": seq}
            SessionEvent.objects.create(session=session, session_key=session.key, seq=seq, event=event, payload=payload)
    publish_on_commit(session_group(session.key), event, payload, seq=seq)
    session.event_seq = seq
    return seq


class _EventBatch:
    """The session events of one transaction: numbered at once (each bump of the
    session's counter is its own statement, so a savepoint that rolls back takes its
    numbers with it), their rows inserted together at the end."""

    def __init__(self) -> None:
        self.depth = len(connection.savepoint_ids)
        self.rows: list = []

    def add(self, session, seq: int, event: str, payload: dict[str, Any]) -> None:
        from .models import SessionEvent

        self.rows.append(SessionEvent(session_id=session.pk, session_key=session.key, seq=seq, event=event,
                                      payload=payload))  # fmt: skip

    def flush(self) -> None:
        from .models import SessionEvent

        if self.rows:
            SessionEvent.objects.bulk_create(self.rows)


_batches = threading.local()


@contextlib.contextmanager
def event_batch():
    """A transaction whose session events are numbered as they are published and written
    in one insert when it ends (a nested call joins the outer batch). An event of a step
    (lifecycle, deltas, the transcript's ``session.message``) costs one statement, not a
    transaction of three.

    A nested call opens no savepoint of its own: code that catches an error and goes on
    inside a batch wraps the failing part in ``transaction.atomic()`` (events published
    in that savepoint are written at once and roll back with it)."""
    if getattr(_batches, "current", None) is not None:
        yield
        return
    with transaction.atomic():
        batch = _batches.current = _EventBatch()
        try:
            yield
            batch.flush()
        finally:
            _batches.current = None


def _bump_event_seq(session_pk: int) -> int:
    """``event_seq + 1`` of the session, returned by the same statement (which locks the
    row until the transaction ends)."""
    from .models import Session

    table = connection.ops.quote_name(Session._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET event_seq = event_seq + 1 WHERE id = %s RETURNING event_seq", [session_pk])
        row = cursor.fetchone()
    if row is None:
        raise Session.DoesNotExist(f"session {session_pk} is gone")
    return row[0]


def notify_engines(run_id: str) -> None:
    """Tell run engines (after commit) that ``run_id`` is queued; they also poll."""
    transaction.on_commit(lambda: layer_send(ENGINE_GROUP, {"type": "engine.wakeup", "runId": run_id}))

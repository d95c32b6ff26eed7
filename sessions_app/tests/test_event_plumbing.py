"""How events leave: numbered in batches, sent without waiting, through the scaled in-memory layer."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from asgiref.sync import sync_to_async
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from sessions_app.events import event_batch, layer_send, publish_session_event, session_group
from sessions_app.layers import GatewayInMemoryChannelLayer
from sessions_app.models import Session, SessionEvent
from sessions_app.services.sessions import session_ensure

pytestmark = pytest.mark.django_db(transaction=True)
KEY = "agent:main:main"


def _seqs(session) -> list[int]:
    return list(SessionEvent.objects.filter(session=session).order_by("seq").values_list("seq", flat=True))


def test_a_batch_numbers_events_in_order_and_inserts_them_together():
    session, _ = session_ensure(key=KEY)
    start = Session.objects.get(pk=session.pk).event_seq
    with CaptureQueriesContext(connection) as queries:
        with event_batch():
            seqs = [publish_session_event(session, "agent", {"n": n}) for n in range(5)]
    assert seqs == list(range(start + 1, start + 6))
    inserts = [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1  # five rows, one statement
    assert not [q for q in queries.captured_queries if q["sql"].startswith(("SAVEPOINT", "SELECT"))]
    assert Session.objects.get(pk=session.pk).event_seq == start + 5
    rows = SessionEvent.objects.filter(session=session, seq__gt=start).order_by("seq")
    assert [row.payload["n"] for row in rows] == [0, 1, 2, 3, 4]
    assert [row.payload["sessionSeq"] for row in rows] == seqs


def test_an_event_outside_a_batch_and_after_it_continues_the_numbering():
    session, _ = session_ensure(key=KEY)
    first = publish_session_event(session, "agent", {})
    with event_batch():
        publish_session_event(session, "agent", {})
        publish_session_event(session, "agent", {})
    last = publish_session_event(session, "agent", {})
    assert last == first + 3
    assert _seqs(session)[-4:] == [first, first + 1, first + 2, first + 3]


def test_an_event_in_a_savepoint_that_rolls_back_leaves_no_gap_and_no_duplicate():
    session, _ = session_ensure(key=KEY)
    with event_batch():
        kept = publish_session_event(session, "agent", {"n": "kept"})
        publish_session_event(session, "agent", {"n": "kept too"})
        try:
            with transaction.atomic():
                publish_session_event(session, "agent", {"n": "rolled back"})
                raise IntegrityError("simulated")
        except IntegrityError:
            pass
        after = publish_session_event(session, "agent", {"n": "after"})
    assert after == kept + 2
    rows = SessionEvent.objects.filter(session=session, seq__gte=kept).order_by("seq")
    assert [row.payload["n"] for row in rows] == ["kept", "kept too", "after"]
    assert Session.objects.get(pk=session.pk).event_seq == after


def test_a_batch_that_fails_writes_nothing_and_publishes_nothing(monkeypatch):
    session, _ = session_ensure(key=KEY)
    before = Session.objects.get(pk=session.pk).event_seq
    sent = []
    monkeypatch.setattr("sessions_app.events.layer_send", lambda group, message: sent.append(message))
    with pytest.raises(RuntimeError), event_batch():
        publish_session_event(session, "agent", {})
        raise RuntimeError("the step failed")
    assert Session.objects.get(pk=session.pk).event_seq == before
    assert not SessionEvent.objects.filter(session=session, seq__gt=before).exists()
    assert sent == []


async def test_a_database_thread_hands_events_to_its_loop_without_waiting_in_order(monkeypatch):
    layer = GatewayInMemoryChannelLayer(capacity=1000)
    channel = await layer.new_channel()
    group = session_group("agent:main:order")
    await layer.group_add(group, channel)
    monkeypatch.setattr("sessions_app.events.get_channel_layer", lambda: layer)
    waited = []

    def waiting(fn):  # the path that blocks this thread until the loop has sent the message
        waited.append(fn)
        return lambda *args: None

    monkeypatch.setattr("sessions_app.events.async_to_sync", waiting)
    loop_thread = threading.get_ident()

    def publish() -> None:
        assert threading.get_ident() != loop_thread
        for n in range(200):
            layer_send(group, {"type": "gateway.event", "n": n})

    await sync_to_async(publish)()
    assert waited == []
    received = [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(200)]
    assert [message["n"] for message in received] == list(range(200))


async def test_the_in_memory_layer_logs_a_full_channel_instead_of_swallowing_it(caplog):
    layer = GatewayInMemoryChannelLayer(capacity=2)
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    with caplog.at_level(logging.WARNING, logger="sessions_app.layers"):
        for n in range(3):
            await layer.group_send("g", {"type": "x", "n": n})
    assert [(await layer.receive(channel))["n"] for _ in range(2)] == [0, 1]
    assert "is full" in caplog.text


async def test_the_in_memory_layer_still_expires_old_messages():
    layer = GatewayInMemoryChannelLayer(expiry=0, capacity=10)
    layer.sweep_interval_s = 0
    stale, fresh = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", stale)
    await layer.send(stale, {"type": "old"})
    await asyncio.sleep(0.01)
    await layer.group_send("g-other", {"type": "sweep"})  # any send sweeps (at most once per interval)
    assert stale not in layer.channels and stale not in layer.groups.get("g", {})
    await layer.send(fresh, {"type": "new"})
    assert fresh in layer.channels

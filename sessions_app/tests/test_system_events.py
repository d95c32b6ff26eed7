"""The durable System: queue: trim, ignore empty, drop consecutive duplicates, cap, context keys."""

from __future__ import annotations

import pytest
from django.utils import timezone

from openclaw_site.errors import InvalidRequestError
from sessions_app.models import SystemEvent
from sessions_app.services.system_events import (
    MAX_PENDING,
    system_event_enqueue,
    system_event_list,
    system_events_drop_by_context_key,
)

pytestmark = pytest.mark.django_db
KEY = "agent:main:main"


def enqueue(text, **kwargs):
    return system_event_enqueue(session_key=kwargs.pop("session_key", KEY), agent_id="main", text=text, **kwargs)


def texts(key=KEY):
    return list(system_event_list(session_key=key).values_list("text", flat=True))


def test_system_event_enqueue_trims_and_ignores_empty():
    """Text is trimmed; empty or whitespace-only text queues nothing."""
    assert enqueue("  build finished \n").text == "build finished"
    assert enqueue("") is None
    assert enqueue("   ") is None
    assert texts() == ["build finished"]


def test_system_event_enqueue_requires_a_session_key():
    """Without a session key the call is refused and nothing is stored."""
    with pytest.raises(InvalidRequestError, match="system events require a sessionKey"):
        enqueue("x", session_key="  ")
    assert SystemEvent.objects.count() == 0


def test_system_event_enqueue_drops_consecutive_duplicates_only():
    """The same text twice in a row is kept once; after another text it may repeat."""
    assert enqueue("ping") is not None
    assert enqueue("ping") is None
    assert enqueue(" ping ") is None
    enqueue("pong")
    assert enqueue("ping") is not None
    assert texts() == ["ping", "pong", "ping"]


def test_system_event_duplicate_memory_resets_after_drain():
    """Once the queue was consumed, the same text is a new event again."""
    enqueue("ping")
    SystemEvent.objects.update(consumed_at=timezone.now(), consumed_by_run_id="r1")
    assert enqueue("ping") is not None
    assert texts() == ["ping"]


def test_system_event_queue_keeps_the_newest_twenty():
    """Past 20 pending events per session the oldest go first; other sessions are untouched."""
    enqueue("other", session_key="agent:main:other")
    for index in range(25):
        enqueue(f"event {index}")
    assert len(texts()) == MAX_PENDING
    assert texts()[0] == "event 5" and texts()[-1] == "event 24"
    assert texts("agent:main:other") == ["other"]


def test_system_event_context_keys_are_normalised_and_dropped_together():
    """Context keys are trimmed and lowercased; dropping one removes its pending events everywhere."""
    enqueue("reminder", context_key="  CRON:Job-1 ")
    enqueue("reminder 2", session_key="agent:ops:main", context_key="cron:job-1")
    enqueue("unrelated", context_key="cron:job-2")
    assert SystemEvent.objects.filter(context_key="cron:job-1").count() == 2
    assert system_events_drop_by_context_key(context_key="cron:JOB-1") == 2
    assert texts() == ["unrelated"]


def test_system_event_list_includes_consumed_on_request():
    """The selector lists pending events, or every event with ``include_consumed``."""
    enqueue("old")
    SystemEvent.objects.update(consumed_at=timezone.now())
    enqueue("new")
    assert texts() == ["new"]
    assert list(system_event_list(session_key=KEY, include_consumed=True).values_list("text", flat=True)) == ["old", "new"]

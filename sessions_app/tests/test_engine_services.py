"""The engine's services in-process: inbox drain, context building, claims and the lane."""

from __future__ import annotations

import pytest
from django.utils import timezone

from sessions_app.engine import store
from sessions_app.engine.context import build_messages
from sessions_app.models import Delivery, Run, SystemEvent
from sessions_app.services.chat import chat_send
from sessions_app.services.inbox import inbox_drain
from sessions_app.services.sessions import session_ensure, transcript_append

pytestmark = pytest.mark.django_db(transaction=True)
KEY = "agent:main:main"


def test_inbox_drain_consumes_system_events_and_deliveries_once():
    session, _ = session_ensure(key=KEY)
    run = Run.objects.create(session=session, session_key=KEY, agent_id="main", run_id="r1")
    SystemEvent.objects.create(session_key=KEY, agent_id="main", text="disk full")
    Delivery.objects.create(kind="send", idempotency_key="d1", target_session_key=KEY, payload={"text": "reply!"})
    Delivery.objects.create(kind="send", idempotency_key="d2", target_session_key=KEY, target_run_id="other",
                            payload={"text": "not mine"})  # fmt: skip
    messages = inbox_drain(session=session, run=run)
    assert messages[0]["content"].startswith("System: [") and messages[0]["content"].endswith("] disk full")
    assert messages[1]["content"] == "reply!"
    assert SystemEvent.objects.get().consumed_by_run_id == "r1"
    assert Delivery.objects.get(idempotency_key="d1").state == "consumed"
    assert Delivery.objects.get(idempotency_key="d2").state == "pending"
    assert inbox_drain(session=session, run=run) == []


def test_context_merges_system_lines_into_the_next_user_message_and_closes_tool_calls():
    session, _ = session_ensure(key=KEY)
    run = Run.objects.create(session=session, session_key=KEY, agent_id="main", run_id="r1")
    transcript_append(session=session, role="system", content="System: [t] ping")
    transcript_append(session=session, role="user", content="hello")
    transcript_append(session=session, role="assistant", content=[{"type": "toolCall", "id": "c1", "name": "x", "arguments": {}}])
    messages = build_messages(session=session, run=run)
    assert messages[1] == {"role": "user", "content": "System: [t] ping\n\nhello"}
    assert messages[2]["tool_calls"][0]["id"] == "c1"
    assert messages[3]["role"] == "tool" and "interrupted" in messages[3]["content"]


def test_claims_respect_the_session_lane_and_debounce():
    first = chat_send(session_key=KEY, message="one", idempotency_key="a").run
    chat_send(session_key="agent:main:other", message="x", idempotency_key="b")
    claimed = store.claim_runs(owner="e1", limit=10, lease_s=30)
    assert sorted(run_id for _, run_id in claimed) == ["a", "b"]
    queued = chat_send(session_key=KEY, message="two", idempotency_key="c").run
    assert queued.input["queueMode"] == "steer" and queued.parent_run_id == "a"
    assert store.claim_runs(owner="e1", limit=10, lease_s=30) == []
    Run.objects.filter(pk=first.pk).update(lease_expires_at=timezone.now() - timezone.timedelta(seconds=1))
    assert store.recover_expired(owner="e2", limit=10, lease_s=30) == [(first.pk, "a")]
    assert Run.objects.get(pk=first.pk).attempts == 2
    assert store.renew_leases(owner="e1", run_pks=[first.pk], lease_s=30) == {first.pk}

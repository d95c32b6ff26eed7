"""Inter-session delivery: exactly once by idempotency key, hand-over to a live or a new
turn, run-scoped fallback to the durable parent (seed 002), replies, failure notices,
sweep and operator retry. Turns are played through the engine's own store functions
(claim, inbox drain, finish), so the rows are the ones a real engine writes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_app.engine import store
from sessions_app.models import Delivery, Run, Session, TranscriptEntry
from sessions_app.services import deliveries as svc
from sessions_app.services.inbox import inbox_drain
from sessions_app.services.run_hooks import run_finished
from sessions_app.services.runs import run_enqueue
from sessions_app.services.sessions import session_ensure

pytestmark = pytest.mark.django_db(transaction=True)

CALLER = "agent:ops:main"
TARGET = "agent:ops:worker"
CRON = "agent:ops:cron:billing"
CRON_RUN = f"{CRON}:run:sid-1"


@pytest.fixture(autouse=True)
def agents(gateway_config):
    gateway_config({"agents": {"list": [{"id": "ops", "default": True}, {"id": "other"}]}})


def send(key: str = "d1", target: str = TARGET, **kw) -> Delivery:
    kw.setdefault("kind", Delivery.Kind.SEND)
    kw.setdefault("source_session_key", CALLER)
    kw.setdefault("source_run_id", None)
    kw.setdefault("payload", {"text": f"hello {key}"})
    delivery, _ = svc.delivery_enqueue(target_session_key=target, idempotency_key=key, **kw)
    delivery.refresh_from_db()
    return delivery


def claim(session_key: str) -> Run:
    """Claim the oldest queued run of the session as an engine would."""
    store.claim_runs(owner="test-engine", limit=50, lease_s=30)
    return Run.objects.get(session_key=session_key, status=Run.Status.RUNNING)


def busy(session_key: str, run_id: str = "live-run") -> Run:
    session, _ = session_ensure(key=session_key)
    run_enqueue(session=session, agent_id=session.agent_id, input={"message": "work"}, run_id=run_id)
    return claim(session_key)


def finish(run: Run, text: str = "done", status: str = Run.Status.OK) -> Run:
    store.finish_run(run_pk=run.pk, owner="test-engine", status=status, text=text, stop_reason="stop", usage={})
    run.refresh_from_db()
    run_finished(run)
    return run


def drain(run: Run) -> list[dict]:
    return inbox_drain(session=Session.objects.get(key=run.session_key), run=run)


def test_enqueue_is_idempotent_by_key():
    """A replay of the same idempotency key returns the stored row and starts nothing new."""
    first = send("same")
    again, created = svc.delivery_enqueue(
        kind=Delivery.Kind.SEND, source_session_key=CALLER, source_run_id=None, target_session_key=TARGET,
        payload={"text": "other text"}, idempotency_key="same",
    )  # fmt: skip
    assert (created, again.pk) == (False, first.pk)
    assert Delivery.objects.count() == 1
    assert Run.objects.filter(session_key=TARGET).count() == 1


def test_idle_target_gets_a_turn_that_reads_the_message():
    """Idle target: a new turn (kind a2a for a send) is queued; its first step consumes the row."""
    delivery = send()
    assert (delivery.state, delivery.attempts) == (Delivery.State.DELIVERED, 1)
    run = Run.objects.get(session_key=TARGET)
    assert (run.kind, run.status, run.input["deliveryId"]) == (Run.Kind.A2A, "queued", delivery.delivery_id)
    run = claim(TARGET)
    assert [m["content"] for m in drain(run)] == ["hello d1"]
    delivery.refresh_from_db()
    assert (delivery.state, delivery.consumed_by_run_id) == (Delivery.State.CONSUMED, run.run_id)
    entry = TranscriptEntry.objects.get(session__key=TARGET, role="user")
    assert entry.provenance["deliveryId"] == delivery.delivery_id


def test_busy_target_reads_it_at_its_next_step_without_a_new_turn():
    """Busy target: no new turn; the live run's next inbox drain consumes it."""
    live = busy(TARGET)
    delivery = send()
    assert delivery.state == Delivery.State.DELIVERED
    assert Run.objects.filter(session_key=TARGET).count() == 1
    drain(live)
    delivery.refresh_from_db()
    assert delivery.consumed_by_run_id == live.run_id


def test_reply_is_the_final_text_of_the_run_that_read_it():
    live = busy(TARGET)
    delivery = send()
    drain(live)
    finish(live, text="the answer")
    delivery.refresh_from_db()
    assert delivery.reply["text"] == "the answer"
    assert (delivery.reply["runId"], delivery.reply["status"]) == (live.run_id, "ok")


def test_message_to_live_run_scoped_key_is_bound_to_that_run():
    """Seed 002: a pingback to the caller's run-scoped key reaches the blocked run's context."""
    live = busy(CRON_RUN, run_id="cron-run")
    delivery = send("pingback", target=CRON_RUN, payload={"text": "[TASK-COMPLETE] occupancy"})
    assert (delivery.target_session_key, delivery.target_run_id) == (CRON_RUN, "cron-run")
    assert [m["content"] for m in drain(live)] == ["[TASK-COMPLETE] occupancy"]


def test_message_to_ended_run_scoped_key_falls_back_to_the_durable_parent():
    """The run behind a run-scoped key ended: the parent session gets a turn for it."""
    finish(busy(CRON_RUN, run_id="cron-run"))
    delivery = send("late", target=CRON_RUN)
    assert (delivery.target_session_key, delivery.target_run_id) == (CRON, None)
    assert delivery.payload["routes"][0]["from"] == CRON_RUN
    run = claim(CRON)
    drain(run)
    delivery.refresh_from_db()
    assert delivery.consumed_by_run_id == run.run_id
    assert not TranscriptEntry.objects.filter(session__key=CRON_RUN, role="user", provenance__deliveryId=delivery.delivery_id).exists()


def test_unread_message_of_an_ending_run_moves_to_the_parent():
    """Arrived after the caller's last model step: when its run ends it is re-routed, not lost."""
    live = busy(CRON_RUN, run_id="cron-run")
    delivery = send("after-last-step", target=CRON_RUN)
    finish(live)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.target_session_key) == (Delivery.State.DELIVERED, CRON)
    drain(claim(CRON))
    delivery.refresh_from_db()
    assert delivery.state == Delivery.State.CONSUMED


def test_unread_message_of_a_durable_session_gets_the_next_turn():
    live = busy(TARGET)
    delivery = send()
    finish(live)
    run = claim(TARGET)
    assert run.input["deliveryId"] == delivery.delivery_id
    drain(run)
    delivery.refresh_from_db()
    assert delivery.consumed_by_run_id == run.run_id


def test_mark_failed_tells_the_sender_once():
    """Failed: the sender gets a visible notice delivery; a notice never gets a notice."""
    live = busy(TARGET)
    delivery = svc.delivery_mark_failed(delivery=send(), reason="target gone")
    assert (delivery.state, delivery.sender_notified) == (Delivery.State.FAILED, True)
    notice = Delivery.objects.get(idempotency_key=f"delivery-notice:v1:{delivery.delivery_id}")
    assert (notice.target_session_key, notice.kind) == (CALLER, Delivery.Kind.REPLY)
    assert "could not be delivered to agent:ops:worker: target gone" in notice.payload["text"]
    svc.delivery_mark_failed(delivery=notice, reason="x")
    assert Delivery.objects.count() == 2
    assert live.status == "running"


def test_sweep_retries_a_message_whose_turn_vanished_and_fails_after_max_attempts():
    delivery = send(max_attempts=2)
    Run.objects.filter(session_key=TARGET).update(status=Run.Status.ABORTED)
    later = timezone.now() + timedelta(minutes=1)
    assert svc.delivery_sweep(now=later)["retried"] == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 2
    Run.objects.filter(session_key=TARGET).update(status=Run.Status.ABORTED)
    counts = svc.delivery_sweep(now=later + timedelta(hours=1))
    delivery.refresh_from_db()
    assert (counts["failed"], delivery.state) == (1, Delivery.State.FAILED)
    assert Delivery.objects.filter(payload__notice="delivery_failed", target_session_key=CALLER).count() == 1


def test_sweep_does_not_charge_an_attempt_while_the_target_is_busy():
    busy(TARGET)
    delivery = send()
    counts = svc.delivery_sweep(now=timezone.now() + timedelta(minutes=5))
    delivery.refresh_from_db()
    assert (counts["waiting"], delivery.attempts, delivery.state) == (1, 1, Delivery.State.DELIVERED)


def test_sweep_expires_old_messages_with_a_notice():
    delivery = send(expires_at=timezone.now() + timedelta(seconds=1))
    assert svc.delivery_sweep(now=timezone.now() + timedelta(seconds=5))["expired"] == 1
    delivery.refresh_from_db()
    assert delivery.state == Delivery.State.EXPIRED
    assert Delivery.objects.filter(payload__deliveryId=delivery.delivery_id, payload__state="expired").exists()


def test_operator_retry_hands_a_failed_message_over_again():
    delivery = svc.delivery_mark_failed(delivery=send(), reason="gone")
    Run.objects.filter(session_key=TARGET).update(status=Run.Status.ABORTED)
    retried = svc.delivery_retry(delivery=delivery)
    assert (retried.state, retried.attempts) == (Delivery.State.DELIVERED, 1)
    assert Run.objects.filter(session_key=TARGET, status="queued").count() == 1
    with pytest.raises(svc.DeliveryNotRetryableError) as info:
        svc.delivery_retry(delivery=retried)
    assert info.value.details["code"] == "DELIVERY_NOT_RETRYABLE"


def test_twenty_messages_to_one_idle_session_start_one_turn_and_are_read_once():
    for index in range(20):
        send(f"fan-{index}", payload={"text": f"msg {index}"})
    assert Run.objects.filter(session_key=TARGET).count() == 1
    run = claim(TARGET)
    assert len(drain(run)) == 20
    assert drain(run) == []
    assert Delivery.objects.filter(state=Delivery.State.CONSUMED, consumed_by_run_id=run.run_id).count() == 20


def test_sweep_links_a_reply_whose_run_ended_without_its_hooks():
    """The process died between the run's end and its hooks: the sweep records the reply."""
    live = busy(TARGET)
    delivery = send()
    drain(live)
    store.finish_run(run_pk=live.pk, owner="test-engine", status=Run.Status.OK, text="late answer",
                     stop_reason="stop", usage={})  # fmt: skip
    assert svc.delivery_sweep()["replied"] == 0
    counts = svc.delivery_sweep(now=timezone.now() + timedelta(minutes=1))
    delivery.refresh_from_db()
    assert (counts["replied"], delivery.reply["text"]) == (1, "late answer")

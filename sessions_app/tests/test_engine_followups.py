"""Engine follow-ups: aborts through the one abort service, the truth of run_abort,
run-finished hooks on every terminal transition, delivery turns with nothing to read."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from sessions_app.engine import Engine, store
from sessions_app.events import ENGINE_GROUP
from sessions_app.models import Delivery, Run, SessionEvent, TranscriptEntry
from sessions_app.services import sessions as services
from sessions_app.services.chat import run_abort
from sessions_app.services.runs import run_enqueue

pytestmark = pytest.mark.django_db(transaction=True)
KEY = "agent:main:main"
OTHER = "agent:main:worker"


def make_run(session, run_id: str, status: str, **fields) -> Run:
    return Run.objects.create(run_id=run_id, session=session, session_key=session.key, agent_id="main",
                              status=status, input={"message": "hi"}, **fields)  # fmt: skip


def consumed_delivery(run_id: str) -> Delivery:
    """A delivery read by ``run_id`` whose reply is recorded by the run-finished hooks."""
    return Delivery.objects.create(kind="send", idempotency_key=f"d-{run_id}", target_session_key=KEY,
                                   state="consumed", consumed_by_run_id=run_id, payload={"text": "x"})  # fmt: skip


class EngineListener:
    """A channel in the engines' group; :meth:`drain` returns what reached it."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.channel = async_to_sync(self.layer.new_channel)()
        async_to_sync(self.layer.group_add)(ENGINE_GROUP, self.channel)

    def drain(self, *, until_type: str | None = None, count: int = 1, timeout: float = 5.0) -> list[dict]:
        """What reached the channel. With ``until_type``, wait (at most ``timeout`` seconds)
        until ``count`` messages of that type arrived, then take whatever else is queued:
        the publish is asynchronous on a Redis layer, so one short read can miss it."""

        async def receive_all() -> list[dict]:
            received: list[dict] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout

            def satisfied() -> bool:
                return until_type is None or sum(m.get("type") == until_type for m in received) >= count

            while True:
                wait = 0.05 if satisfied() else max(0.05, deadline - loop.time())
                try:
                    received.append(await asyncio.wait_for(self.layer.receive(self.channel), wait))
                except TimeoutError:
                    if satisfied() or loop.time() >= deadline:
                        return received

        return async_to_sync(receive_all)()


# --- reset and delete abort through the abort service ----------------------------------------


def test_session_reset_aborts_runs_with_events_engine_notice_and_hooks():
    """Reset: the queued run ends aborted with a chat aborted event and its hooks (the
    delivery it read gets its reply); the running run is flagged and its engine told."""
    session, _ = services.session_ensure(key=KEY)
    queued = make_run(session, "q1", "queued")
    running = make_run(session, "r1", "running", lease_owner="e1", lease_expires_at=timezone.now())
    delivery = consumed_delivery("q1")
    messages = EngineListener()
    services.session_reset(key=KEY, reason="new")
    queued.refresh_from_db()
    running.refresh_from_db()
    assert (queued.status, queued.error["message"]) == ("aborted", "session new")
    assert (running.status, running.abort_requested) == ("running", True)
    chat = SessionEvent.objects.get(event="chat", payload__runId="q1")
    assert chat.payload["state"] == "aborted"
    delivery.refresh_from_db()
    assert delivery.reply["runId"] == "q1" and delivery.reply["status"] == "aborted"
    aborts = [m for m in messages.drain(until_type="engine.abort") if m.get("type") == "engine.abort"]
    assert [m["runId"] for m in aborts] == ["r1"]
    # The reset saved the session after the abort event: the sequence did not go back.
    session.refresh_from_db()
    assert session.event_seq == SessionEvent.objects.filter(session=session).order_by("-seq").first().seq


def test_session_delete_aborts_runs_through_the_abort_service():
    session, _ = services.session_ensure(key=OTHER)
    queued = make_run(session, "q2", "queued")
    running = make_run(session, "r2", "running", lease_owner="e1", lease_expires_at=timezone.now())
    delivery = consumed_delivery("q2")
    messages = EngineListener()
    assert services.session_delete(key=OTHER)["deleted"] is True
    queued.refresh_from_db()
    running.refresh_from_db()
    assert (queued.status, queued.error["message"]) == ("aborted", "session deleted")
    assert running.abort_requested is True
    delivery.refresh_from_db()
    assert delivery.reply["status"] == "aborted"
    assert [m["runId"] for m in messages.drain(until_type="engine.abort") if m.get("type") == "engine.abort"] == ["r2"]


# --- run_abort tells the truth ---------------------------------------------------------------


def test_run_abort_of_a_run_that_ended_meanwhile_is_false():
    session, _ = services.session_ensure(key=KEY)
    run = make_run(session, "e1", "running")
    Run.objects.filter(pk=run.pk).update(status="ok")  # finished after `run` was read
    assert run_abort(run=run) is False
    run.refresh_from_db()
    assert (run.status, run.abort_requested) == ("ok", False)


def test_run_abort_of_a_queued_run_claimed_meanwhile_asks_the_engine():
    session, _ = services.session_ensure(key=KEY)
    run = make_run(session, "c1", "queued")
    Run.objects.filter(pk=run.pk).update(status="running")  # claimed after `run` was read
    assert run_abort(run=run) is True
    run.refresh_from_db()
    assert (run.status, run.abort_requested) == ("running", True)


# --- hooks when the engine gives up ----------------------------------------------------------


def test_a_run_given_up_after_two_attempts_runs_its_hooks_once():
    """ENGINE_LOST is a terminal transition: the run-finished hooks run (delivery reply)."""
    session, _ = services.session_ensure(key=KEY)
    make_run(session, "lost", "running", attempts=2, lease_owner="dead",
             lease_expires_at=timezone.now() - timezone.timedelta(seconds=5))  # fmt: skip
    delivery = consumed_delivery("lost")
    assert store.recover_expired(owner="e2", limit=10, lease_s=30) == []
    run = Run.objects.get(run_id="lost")
    assert run.status == "error" and run.error["code"] == "ENGINE_LOST"
    delivery.refresh_from_db()
    assert delivery.reply["runId"] == "lost" and delivery.reply["status"] == "error"
    assert store.recover_expired(owner="e2", limit=10, lease_s=30) == []
    assert SessionEvent.objects.filter(event="chat", payload__runId="lost").count() == 1


# --- a delivery turn with nothing to read -----------------------------------------------------


@pytest.fixture
async def engine(transactional_db, settings):
    settings.OPENCLAW_ENGINE_POLL_S = 0.1
    eng = Engine(owner="test-engine")
    task = asyncio.create_task(eng.run())
    yield eng
    await eng.stop()
    task.cancel()


async def wait_terminal(run_id: str, timeout: float = 20) -> Run:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        run = await Run.objects.filter(run_id=run_id).afirst()
        if run is not None and run.is_terminal:
            return run
        assert asyncio.get_running_loop().time() < deadline, f"run {run_id} did not finish"
        await asyncio.sleep(0.05)


@sync_to_async
def delivery_turn(run_id: str, *, with_pending: bool) -> None:
    session, _ = services.session_ensure(key=KEY)
    if with_pending:
        Delivery.objects.create(kind="send", idempotency_key=f"p-{run_id}", target_session_key=KEY,
                                payload={"text": "a reply for you"})  # fmt: skip
    run_enqueue(session=session, agent_id="main", kind=Run.Kind.DELIVERY, run_id=run_id,
                input={"message": "", "source": "delivery", "deliveryId": "gone"})  # fmt: skip


@sync_to_async
def roles_of(run_id: str) -> list[str]:
    return list(TranscriptEntry.objects.filter(run_id=run_id).order_by("seq").values_list("role", flat=True))


async def test_a_delivery_turn_whose_delivery_was_read_elsewhere_ends_ok_without_the_model(engine):
    await delivery_turn("dv1", with_pending=False)
    run = await wait_terminal("dv1")
    assert run.status == "ok" and run.output == {"text": "", "stopReason": "nothing_new"}
    assert await roles_of("dv1") == []
    assert run.usage["totalTokens"] == 0


async def test_a_delivery_turn_with_something_to_read_calls_the_model(engine):
    await delivery_turn("dv2", with_pending=True)
    run = await wait_terminal("dv2")
    assert run.status == "ok" and run.output["stopReason"] != "nothing_new"
    assert await roles_of("dv2") == ["user", "assistant"]

"""The sessions_send tool in-process (spec-b §4): target resolution and its messages,
visibility and send policy, every result status, the soft timeout whose reply comes back
as a pingback, and the agent-to-agent flow (ping-pong, REPLY_SKIP, the turn cap, the
announce step, ANNOUNCE_SKIP, skipped flows). The target's turns are played with the
engine's own store functions."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from acp_app.models import AcpSession
from sessions_app.engine import store
from sessions_app.models import Delivery, Run, Session
from sessions_app.services.inbox import inbox_drain
from sessions_app.services.run_hooks import run_finished
from sessions_app.services.runs import run_enqueue
from sessions_app.services.sessions import session_ensure
from sessions_app.tools import ToolContext, invoke_tool

pytestmark = pytest.mark.django_db(transaction=True)

ME = "agent:main:main"
PEER = "agent:main:peer"
OPS = "agent:ops:main"


@pytest.fixture
def config(gateway_config):
    def apply(visibility="agent", turns=0, a2a=None, **extra):
        gateway_config({
            "agents": {"list": [{"id": "main", "default": True}, {"id": "ops"}]},
            "tools": {"sessions": {"visibility": visibility}, "agentToAgent": a2a or {"enabled": True}},
            "session": {"agentToAgent": {"maxPingPongTurns": turns}, **extra},
        })  # fmt: skip

    apply()
    return apply


@pytest.fixture
def sessions(config):
    for key in (ME, PEER, OPS):
        session_ensure(key=key)


async def send(args: dict, *, key: str = ME, run_id: str | None = None) -> dict:
    ctx = ToolContext(session_key=key, agent_id=key.split(":")[1], run_id=run_id, tool_call_id="call-1")
    return await invoke_tool(ctx, "sessions_send", args)


# --- playing turns -----------------------------------------------------------------------------


PLAYED: set[int] = set()


@sync_to_async
def claim_next(key: str) -> Run | None:
    """The next unplayed turn of ``key`` (claiming queued runs as an engine does)."""
    active = Run.objects.filter(session_key=key, status__in=(Run.Status.QUEUED, Run.Status.RUNNING))
    queued = active.exclude(pk__in=PLAYED).order_by("created_at").first()
    if queued is None:
        return None
    store.claim_runs(owner="test-engine", limit=100, lease_s=30)
    run = Run.objects.get(pk=queued.pk)
    if run.status != Run.Status.RUNNING:
        return None
    PLAYED.add(run.pk)
    store.record_inputs(state=store.turn_begin(run_pk=run.pk))
    return run


@sync_to_async
def finish(run: Run, text: str, status: str = Run.Status.OK) -> None:
    error = None if status == Run.Status.OK else {"code": status.upper(), "message": f"run {status}"}
    store.finish_run(run_pk=run.pk, owner="test-engine", status=status, text=text, stop_reason="stop", usage={},
                     error=error)  # fmt: skip
    run.refresh_from_db()
    run_finished(run)


async def play(key: str, text: str, *, status: str = Run.Status.OK, delay: float = 0.1, timeout: float = 5) -> Run:
    """Wait for the next turn of ``key``, read its inbox and end it with ``text``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (run := await claim_next(key)) is None:
        assert loop.time() < deadline, f"no turn for {key}"
        await asyncio.sleep(0.02)
    await asyncio.sleep(delay)
    await finish(run, text, status)
    return run


@sync_to_async
def user_texts(key: str) -> list[str]:
    session = Session.objects.get(key=key)
    return [e.text for e in session.entries.filter(role="user").order_by("seq")]


@sync_to_async
def deliveries(**filters) -> list[Delivery]:
    return list(Delivery.objects.filter(**filters).order_by("created_at"))


# --- resolution --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"message": "hi"}, "Either sessionKey or label is required"),
        ({"agentId": "ghost", "message": "hi"}, "agent not found: ghost"),
        ({"label": "nobody", "message": "hi"}, "No session found with label: nobody"),
        ({"sessionKey": "agent:main:slack:channel:c1:thread:t9", "message": "hi"},
         "sessions_send cannot target a thread session for inter-agent coordination. Use the parent channel session key instead."),
        ({"sessionKey": "nosuchid", "message": "hi"}, "Session not found: nosuchid (use the full sessionKey from sessions_list)"),
        ({"sessionKey": PEER}, "message required"),
    ],
)  # fmt: skip
async def test_resolution_errors(sessions, args, message):
    result = await send(args)
    assert (result["status"], result["error"]) == ("error", message)
    assert result["runId"]
    assert await deliveries() == []


async def test_label_resolution_unique_and_ambiguous(sessions):
    await sync_to_async(Session.objects.filter(key=PEER).update)(label="billing")
    await sync_to_async(session_ensure)(key="agent:ops:billing", defaults={"label": "billing"})
    unique = await send({"label": "billing", "agentId": "main", "message": "hi", "timeoutSeconds": 0})
    assert (unique["status"], unique["sessionKey"]) == ("accepted", PEER)
    ambiguous = await send({"label": "billing", "message": "hi", "timeoutSeconds": 0})
    assert ambiguous["status"] == "error"
    assert ambiguous["error"].startswith("Multiple sessions found with label: billing (")


async def test_session_key_wins_over_label_and_agent_id_alone_targets_main(sessions):
    keyed = await send({"sessionKey": PEER, "label": "whatever", "message": "hi", "timeoutSeconds": 0})
    assert keyed["sessionKey"] == PEER
    by_agent = await send({"agentId": "ops", "message": "hi", "timeoutSeconds": 0})
    assert by_agent["sessionKey"] == OPS


async def test_session_id_is_accepted_as_a_reference(sessions):
    session_id = (await sync_to_async(Session.objects.get)(key=PEER)).session_id
    result = await send({"sessionKey": session_id, "message": "hi", "timeoutSeconds": 0})
    assert result["sessionKey"] == PEER


async def test_delegated_worker_label_resolves_only_for_its_owner(sessions):
    """Rule 4: a hub-delegated worker is reachable by label only from its owner session."""

    @sync_to_async
    def worker():
        session, _ = session_ensure(key="agent:main:acp:w1", defaults={"label": "coder", "label_scope": ME})
        AcpSession.objects.create(session=session, harness_agent="codex", owner_session_key=ME)

    await worker()
    owner = await send({"label": "coder", "message": "hi", "timeoutSeconds": 0})
    assert (owner["status"], owner["sessionKey"], owner["delivery"]["status"]) == ("accepted", "agent:main:acp:w1", "skipped")
    stranger = await send({"label": "coder", "message": "hi", "timeoutSeconds": 0}, key=PEER)
    assert stranger["status"] == "forbidden"
    assert stranger["error"] == (
        'Label "coder" names a hub-delegated worker of another session; only its owner can reach it.'
    )


# --- guard ---------------------------------------------------------------------------------------


async def test_visibility_forbidden_carries_the_message_and_writes_nothing(config, sessions):
    config(visibility="tree")
    result = await send({"sessionKey": PEER, "message": "hi"})
    assert result["status"] == "forbidden"
    assert "restricted to the current session tree" in result["error"]
    assert await deliveries() == []


async def test_cross_agent_label_lookup_needs_agent_to_agent(config, sessions):
    config(visibility="all", a2a={"enabled": False})
    result = await send({"label": "x", "agentId": "ops", "message": "hi"})
    assert result["status"] == "forbidden"
    assert result["error"].startswith("Agent-to-agent messaging is disabled.")


async def test_send_policy_deny_is_an_error(config, sessions):
    await sync_to_async(Session.objects.filter(key=PEER).update)(send_policy="deny")
    result = await send({"sessionKey": PEER, "message": "hi"})
    assert (result["status"], result["error"]) == ("error", "send blocked by session policy")
    assert await deliveries() == []


# --- statuses ------------------------------------------------------------------------------------


async def test_fire_and_forget_is_accepted_at_once(sessions):
    result = await send({"sessionKey": PEER, "message": "ping", "timeoutSeconds": 0})
    assert (result["status"], result["delivery"]["status"]) == ("accepted", "sent")
    [delivery] = await deliveries()
    assert result["delivery"]["id"] == delivery.delivery_id
    assert result["runId"].startswith(f"delivery:{delivery.delivery_id}:")


async def test_waiting_send_returns_the_reply(sessions):
    callee = asyncio.create_task(play(PEER, "pong"))
    result = await send({"sessionKey": PEER, "message": "ping", "timeoutSeconds": 5})
    run = await callee
    assert result == {"sessionKey": PEER, "runId": run.run_id, "status": "ok", "reply": "pong",
                      "delivery": {"status": "delivered", "id": result["delivery"]["id"], "state": "consumed",
                                   "mode": "announce"}}  # fmt: skip
    assert await user_texts(PEER) == ["ping"]


@pytest.mark.parametrize(("run_status", "wire"), [(Run.Status.ERROR, "error"), (Run.Status.TIMEOUT, "timeout")])
async def test_failed_target_run_is_reported(sessions, run_status, wire):
    callee = asyncio.create_task(play(PEER, "", status=run_status))
    result = await send({"sessionKey": PEER, "message": "ping", "timeoutSeconds": 5})
    await callee
    assert (result["status"], result["sentBeforeError"], result["error"]) == (wire, True, f"run {run_status}")


async def test_soft_timeout_is_accepted_and_the_reply_comes_back_as_a_pingback(sessions):
    """PR #76484 + seed 002: the wait runs out, the reply still reaches the caller later."""

    @sync_to_async
    def caller_turn():
        run, _ = run_enqueue(session=Session.objects.get(key=ME), agent_id="main", input={"message": "go"}, run_id="caller")
        store.claim_runs(owner="test-engine", limit=10, lease_s=30)
        return Run.objects.get(pk=run.pk)

    caller = await caller_turn()
    callee = asyncio.create_task(play(PEER, "late pong", delay=1.5))
    result = await send({"sessionKey": PEER, "message": "ping", "timeoutSeconds": 1}, run_id=caller.run_id)
    assert (result["status"], result["delivery"]["status"]) == ("accepted", "accepted")
    await callee
    [pingback] = await deliveries(kind=Delivery.Kind.PINGBACK)
    assert (pingback.target_session_key, pingback.target_run_id) == (ME, "caller")
    assert "late pong" in pingback.payload["text"]
    drained = await sync_to_async(inbox_drain)(session=await sync_to_async(Session.objects.get)(key=ME), run=caller)
    assert ["late pong" in m["content"] for m in drained] == [True]


async def test_delivery_that_fails_is_reported_failed(sessions):
    @sync_to_async
    def fail_it():
        from sessions_app.services.deliveries import delivery_mark_failed

        delivery = Delivery.objects.get(kind=Delivery.Kind.SEND)
        delivery_mark_failed(delivery=delivery, reason="nobody home")

    async def failer():
        while not await deliveries(kind=Delivery.Kind.SEND):
            await asyncio.sleep(0.02)
        await fail_it()

    task = asyncio.create_task(failer())
    result = await send({"sessionKey": PEER, "message": "ping", "timeoutSeconds": 5})
    await task
    assert (result["status"], result["error"], result["delivery"]["status"]) == ("error", "nobody home", "failed")


async def test_parallel_sends_resolve_independently(sessions):
    """A fast callee's result does not wait for a slow sibling (seed 002, first fix)."""
    await sync_to_async(session_ensure)(key="agent:main:slow")
    fast = asyncio.create_task(play(PEER, "fast", delay=0.1))
    slow = asyncio.create_task(play("agent:main:slow", "slow", delay=2))
    loop = asyncio.get_running_loop()
    started = loop.time()
    first = asyncio.create_task(send({"sessionKey": PEER, "message": "a", "timeoutSeconds": 10}))
    second = asyncio.create_task(send({"sessionKey": "agent:main:slow", "message": "b", "timeoutSeconds": 10}))
    done, _ = await asyncio.wait({first, second}, return_when=asyncio.FIRST_COMPLETED)
    assert done == {first} and (await first)["reply"] == "fast"
    assert loop.time() - started < 1.5
    assert (await second)["reply"] == "slow"
    await asyncio.gather(fast, slow)


# --- agent-to-agent ------------------------------------------------------------------------------


async def test_ping_pong_stops_on_reply_skip_then_announces(config, sessions):
    config(turns=5)
    callee = asyncio.create_task(play(PEER, "round one"))
    result = await send({"sessionKey": PEER, "message": "hello", "timeoutSeconds": 5})
    await callee
    assert result["status"] == "ok"
    turn1 = await play(ME, "requester says more")
    assert (turn1.kind, turn1.run_id.endswith(":turn:1")) == ("a2a", True)
    assert (await user_texts(ME))[-1].endswith("round one")
    assert "Turn 1 of 5." in (await user_texts(ME))[-1]
    turn2 = await play(PEER, "REPLY_SKIP")
    assert turn2.run_id.endswith(":turn:2")
    announce = await play(PEER, "Posted summary")
    assert announce.run_id.endswith(":announce")
    text = (await user_texts(PEER))[-1]
    assert "Latest reply: requester says more" in text and text.endswith("Agent-to-agent announce step.")
    [step] = await deliveries(consumed_by_run_id=announce.run_id)
    assert (step.reply["posted"], step.reply["silent"]) == (True, False)
    await asyncio.sleep(0.1)
    assert await claim_next(ME) is None and await claim_next(PEER) is None


async def test_ping_pong_respects_the_turn_cap_and_announce_skip_stays_silent(config, sessions):
    config(turns=2)
    callee = asyncio.create_task(play(PEER, "r1"))
    await send({"sessionKey": PEER, "message": "hello", "timeoutSeconds": 5})
    await callee
    await play(ME, "t1")
    await play(PEER, "t2")
    announce = await play(PEER, "ANNOUNCE_SKIP")
    assert announce.run_id.endswith(":announce")
    [step] = await deliveries(consumed_by_run_id=announce.run_id)
    assert (step.reply["posted"], step.reply["silent"]) == (False, True)
    assert await claim_next(ME) is None


async def test_cron_requester_gets_no_ping_pong_but_the_target_announces(config, sessions):
    config(turns=5)
    cron = "agent:main:cron:job1"
    await sync_to_async(session_ensure)(key=cron)
    callee = asyncio.create_task(play(PEER, "r1"))
    await send({"sessionKey": PEER, "message": "hello", "timeoutSeconds": 5}, key=cron)
    await callee
    announce = await play(PEER, "ANNOUNCE_SKIP")
    assert announce.run_id.endswith(":announce")
    assert await claim_next(cron) is None


async def test_own_subagent_with_waiting_is_skipped(config, sessions):
    config(turns=5)
    child = "agent:main:subagent:c1"
    await sync_to_async(session_ensure)(key=child, defaults={"spawned_by": ME})
    callee = asyncio.create_task(play(child, "child answer"))
    result = await send({"sessionKey": child, "message": "status?", "timeoutSeconds": 5})
    await callee
    assert (result["status"], result["reply"], result["delivery"]["status"]) == ("ok", "child answer", "skipped")
    await asyncio.sleep(0.2)
    assert await claim_next(ME) is None and await claim_next(child) is None


async def test_unrelated_sender_gets_the_normal_flow_for_someone_elses_subagent(config, sessions):
    config(turns=1)
    child = "agent:main:subagent:c2"
    await sync_to_async(session_ensure)(key=child, defaults={"spawned_by": PEER})
    callee = asyncio.create_task(play(child, "child answer"))
    result = await send({"sessionKey": child, "message": "status?", "timeoutSeconds": 5})
    await callee
    assert result["delivery"]["status"] == "delivered"
    assert (await play(ME, "REPLY_SKIP")).run_id.endswith(":turn:1")

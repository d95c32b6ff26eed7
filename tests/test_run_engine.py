"""End-to-end tests of the run engine: real gateway processes, real WebSocket clients,
the offline model for fast flows and a real local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from asgiref.sync import sync_to_async

from sessions_app.models import Run, SessionEvent, SystemEvent, TranscriptEntry
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.live import write_rules
from tests.support.ws import GatewayCallError, GatewayClient, connect

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

MAIN = "agent:main:main"
RULES = [
    {"match": "slow first", "reply": "slow reply to: {user}", "delayMs": 1500},
    {"match": "parallel", "toolCalls": [
        {"id": "call_slow", "name": "test_sleep", "arguments": {"ms": 1500, "text": "slow-result"}},
        {"id": "call_fast", "name": "test_sleep", "arguments": {"ms": 50, "text": "fast-result"}},
    ]},
    {"match": "nap please", "toolCalls": [{"id": "call_nap", "name": "test_sleep", "arguments": {"ms": 800, "text": "napped"}}]},
    {"match": "collect-", "reply": "collected: {input}"},
    {"on": "tool", "reply": "after tools, I saw: {input}"},
]  # fmt: skip


@pytest.fixture
def rules_file(tmp_path):
    return write_rules(tmp_path, RULES)


@pytest.fixture
def start(gateway_factory, rules_file):
    """Start a gateway (web + engine, no django-q2) with the test rules and test tools."""

    def run(config=None, env=None, roles="web,engine"):
        full_env = {"OPENCLAW_TEST_TOOLS": "1", "OPENCLAW_OFFLINE_RULES": str(rules_file),
                    "OPENCLAW_ENGINE_POLL_S": "0.2", **(env or {})}  # fmt: skip
        return gateway_factory(config=config, args=("--role", roles), env=full_env)

    return run


def final_of(run_id):
    return lambda p: p.get("runId") == run_id and p.get("state") in ("final", "aborted", "error")


def session_events(client: GatewayClient, run_id: str | None = None) -> list[dict]:
    frames = [f for f in client.events if f.get("type") == "event" and f.get("event") in ("chat", "agent")]
    return [f for f in frames if run_id is None or f["payload"].get("runId") == run_id]


@sync_to_async
def run_row(run_id: str) -> Run:
    return Run.objects.get(run_id=run_id)


@sync_to_async
def transcript(key: str = MAIN) -> list[tuple[str, str]]:
    return [(e.role, e.text) for e in TranscriptEntry.objects.filter(session__key=key, archived=False).order_by("seq")]


async def test_one_turn_streams_events_in_order(start):
    """chat.send → started; lifecycle start, model, assistant delta, usage, chat final with the reply."""
    gateway = start()
    client = await connect(gateway)
    try:
        ack = await client.call("chat.send", {"sessionKey": "main", "message": "hi there", "idempotencyKey": "r1"})
        assert ack == {"runId": "r1", "status": "started"}
        final = await client.wait_event("chat", final_of("r1"))
        assert final["payload"]["state"] == "final"
        assert final["payload"]["message"]["content"][0]["text"].endswith("You said: hi there")
        await asyncio.sleep(0.2)
        frames = [f for f in client.events if f["payload"].get("runId") == "r1"] + [final]
        frames.sort(key=lambda f: f["seq"])
        kinds = [(f["event"], f["payload"].get("stream") or f["payload"].get("state"),
                  (f["payload"].get("data") or {}).get("phase")) for f in frames]  # fmt: skip
        lifecycle = [k for k in kinds if k[1] == "lifecycle"]
        assert [k[2] for k in lifecycle] == ["start", "model", "end"]
        assert kinds.index(("agent", "lifecycle", "model")) < kinds.index(("chat", "delta", None)) < kinds.index(("chat", "final", None))
        assert ("agent", "usage", None) in kinds
        seqs = [f["payload"]["sessionSeq"] for f in frames]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        run = await run_row("r1")
        assert run.status == "ok" and run.usage["totalTokens"] > 0
        assert [r for r, _ in await transcript()] == ["user", "assistant"]
    finally:
        await client.close()


async def wait_status(run_id: str, status: str, timeout: float = 10) -> Run:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        run = await run_row(run_id)
        if run.status == status or asyncio.get_running_loop().time() > deadline:
            return run
        await asyncio.sleep(0.05)


def started(run_id):
    return lambda p: p.get("runId") == run_id and p.get("stream") == "lifecycle" and p["data"].get("phase") == "start"


def tool_phase(call_id, phase):
    return lambda p: p.get("stream") == "tool" and p["data"].get("toolCallId") == call_id and p["data"].get("phase") == phase


async def send(client, message, key, session="main"):
    return await client.call("chat.send", {"sessionKey": session, "message": message, "idempotencyKey": key})


# --- queue modes -----------------------------------------------------------------------


async def test_followup_runs_after_the_active_turn(start):
    """followup: the second message is its own turn, started only after the first ends."""
    gateway = start(config={"messages": {"queue": {"mode": "followup", "debounceMs": 0}}})
    client = await connect(gateway)
    try:
        await send(client, "slow first", "f1")
        await client.wait_event("agent", started("f1"))
        assert (await send(client, "second", "f2"))["status"] == "started"
        assert (await run_row("f2")).status == "queued"
        first = await client.wait_event("chat", final_of("f1"))
        begin = await client.wait_event("agent", started("f2"))
        second = await client.wait_event("chat", final_of("f2"))
        assert first["seq"] < begin["seq"] < second["seq"]
        assert second["payload"]["message"]["content"][0]["text"].endswith("You said: second")
    finally:
        await client.close()


async def test_collect_coalesces_queued_messages_into_one_turn(start):
    """collect: two messages queued behind a busy turn become one followup turn."""
    gateway = start(config={"messages": {"queue": {"mode": "collect", "debounceMs": 200}}})
    client = await connect(gateway)
    try:
        await send(client, "slow first", "c0")
        await client.wait_event("agent", started("c0"))
        await send(client, "collect-a", "c1")
        await send(client, "collect-b", "c2")
        final = await client.wait_event("chat", final_of("c1"))
        text = final["payload"]["message"]["content"][0]["text"]
        assert "collect-a" in text and "collect-b" in text
        absorbed = await run_row("c2")
        assert absorbed.status == "ok" and absorbed.output["absorbedInto"] == "c1"
        assert [t for r, t in await transcript() if r == "user"] == ["slow first", "collect-a", "collect-b"]
    finally:
        await client.close()


async def test_steer_reaches_the_running_turn_before_its_next_step(start):
    """steer: a message sent while a tool runs is in the model's input at the next step."""
    gateway = start(config={"messages": {"queue": {"mode": "steer"}}})
    client = await connect(gateway)
    try:
        await send(client, "nap please", "s1")
        await client.wait_event("agent", tool_phase("call_nap", "start"))
        assert (await send(client, "steer-msg", "s2"))["status"] == "started"
        final = await client.wait_event("chat", final_of("s1"))
        assert "steer-msg" in final["payload"]["message"]["content"][0]["text"]
        steered = await run_row("s2")
        assert steered.status == "ok" and steered.output == {"absorbedInto": "s1", "mode": "steer"}
        await asyncio.sleep(0.5)
        assert await sync_to_async(Run.objects.filter(status__in=["queued", "running"]).count)() == 0
    finally:
        await client.close()


async def test_steer_backlog_steers_and_keeps_a_followup(start):
    """steer-backlog: the running turn sees the message, and it also gets its own turn."""
    gateway = start(config={"messages": {"queue": {"mode": "steer-backlog", "debounceMs": 0}}})
    client = await connect(gateway)
    try:
        await send(client, "nap please", "b1")
        await client.wait_event("agent", tool_phase("call_nap", "start"))
        await send(client, "backlog-msg", "b2")
        first = await client.wait_event("chat", final_of("b1"))
        assert "backlog-msg" in first["payload"]["message"]["content"][0]["text"]
        second = await client.wait_event("chat", final_of("b2"))
        assert second["payload"]["message"]["content"][0]["text"].endswith("You said: backlog-msg")
        assert (await run_row("b2:steer")).output["absorbedInto"] == "b1"
    finally:
        await client.close()


async def test_interrupt_aborts_the_active_turn_then_runs_the_new_message(start):
    gateway = start(config={"messages": {"queue": {"mode": "interrupt"}}})
    client = await connect(gateway)
    try:
        await send(client, "slow first", "i1")
        await client.wait_event("agent", started("i1"))
        await send(client, "newest", "i2")
        aborted = await client.wait_event("chat", final_of("i1"))
        assert aborted["payload"]["state"] == "aborted"
        final = await client.wait_event("chat", final_of("i2"))
        assert final["payload"]["state"] == "final"
        assert (await run_row("i1")).status == "aborted"
    finally:
        await client.close()


async def test_queue_cap_drop_new_rejects_and_summarize_carries_a_summary(start):
    """cap 1: drop new → QUEUE_FULL; /queue drop:summarize → the oldest is aborted and summarised."""
    gateway = start(config={"messages": {"queue": {"mode": "followup", "debounceMs": 0, "cap": 1, "drop": "new"}}})
    client = await connect(gateway)
    try:
        await send(client, "slow first", "q1")
        await client.wait_event("agent", started("q1"))
        await send(client, "queued-two", "q2")
        with pytest.raises(GatewayCallError) as full:
            await send(client, "queued-three", "q3")
        assert full.value.details["code"] == "QUEUE_FULL"
        assert (await send(client, "/queue drop:summarize", "q-cmd"))["status"] == "ok"
        await send(client, "queued-four", "q4")
        assert (await run_row("q2")).status == "aborted"
        final = await client.wait_event("chat", final_of("q4"), timeout=15)
        text = final["payload"]["message"]["content"][0]["text"]
        assert "- queued-two" in text and "queued-four" in text
    finally:
        await client.close()


# --- abort, replay, wait -----------------------------------------------------------------


async def test_chat_abort_stops_the_running_turn(start):
    gateway = start()
    client = await connect(gateway)
    try:
        await send(client, "slow first", "a1")
        await client.wait_event("agent", started("a1"))
        result = await client.call("chat.abort", {"sessionKey": "main"})
        assert result == {"ok": True, "aborted": True, "runIds": ["a1"]}
        event = await client.wait_event("chat", final_of("a1"))
        assert event["payload"]["state"] == "aborted"
        waited = await client.call("agent.wait", {"runId": "a1", "timeoutMs": 5000})
        assert waited["status"] == "timeout" and waited["endedAt"]
        assert (await run_row("a1")).status == "aborted"
        with pytest.raises(GatewayCallError) as mismatch:
            await client.call("chat.abort", {"sessionKey": "agent:main:other", "runId": "a1"})
        assert mismatch.value.message == "runId does not match sessionKey"
    finally:
        await client.close()


async def test_stop_command_aborts_the_run_and_queued_followups(start):
    gateway = start(config={"messages": {"queue": {"mode": "followup", "debounceMs": 0}}})
    client = await connect(gateway)
    try:
        await send(client, "slow first", "t1")
        await client.wait_event("agent", started("t1"))
        await send(client, "queued", "t2")
        result = await send(client, "/stop", "t3")
        assert result["ok"] is True and set(result["runIds"]) == {"t1", "t2"}
        await client.wait_event("chat", final_of("t1"))
        assert (await run_row("t2")).status == "aborted"
        assert (await wait_status("t1", "aborted")).status == "aborted"
    finally:
        await client.close()


async def test_idempotent_replay_during_after_and_across_restart(start):
    gateway = start()
    client = await connect(gateway)
    try:
        await send(client, "slow first", "d1")
        assert (await send(client, "slow first", "d1")) == {"runId": "d1", "status": "in_flight"}
        await client.wait_event("chat", final_of("d1"))
        assert (await send(client, "slow first", "d1")) == {"runId": "d1", "status": "ok"}
    finally:
        await client.close()
    gateway.stop()
    again = start()
    client = await connect(again)
    try:
        assert (await send(client, "slow first", "d1")) == {"runId": "d1", "status": "ok"}
        assert await sync_to_async(Run.objects.filter(run_id__startswith="d1").count)() == 1
    finally:
        await client.close()


async def test_agent_wait_timeout_leaves_the_run_running(start):
    gateway = start()
    client = await connect(gateway)
    try:
        await send(client, "slow first", "w1")
        await client.wait_event("agent", started("w1"))
        assert await client.call("agent.wait", {"runId": "w1", "timeoutMs": 100}) == {"runId": "w1", "status": "timeout"}
        assert (await run_row("w1")).status == "running"
        done = await client.call("agent.wait", {"runId": "w1", "timeoutMs": 10000}, timeout=15)
        assert done["status"] == "ok" and done["startedAt"] <= done["endedAt"]
    finally:
        await client.close()


# --- tools ------------------------------------------------------------------------------


async def test_parallel_tool_calls_resolve_independently(start):
    """The fast result is recorded and published while the slow call still runs."""
    gateway = start()
    client = await connect(gateway)
    try:
        await send(client, "parallel please", "p1")
        fast = await client.wait_event("agent", tool_phase("call_fast", "result"))
        tools_now = await sync_to_async(lambda: [e.content[0]["toolCallId"] for e in TranscriptEntry.objects.filter(role="tool")])()
        assert tools_now == ["call_fast"]
        assert (await run_row("p1")).status == "running"
        slow = await client.wait_event("agent", tool_phase("call_slow", "result"))
        assert fast["seq"] < slow["seq"]
        assert fast["payload"]["data"]["result"] == {"text": "fast-result", "sleptMs": 50}
        assert slow["payload"]["ts"] - fast["payload"]["ts"] >= 1000
        final = await client.wait_event("chat", final_of("p1"))
        text = final["payload"]["message"]["content"][0]["text"]
        assert "fast-result" in text and "slow-result" in text
    finally:
        await client.close()


async def test_tools_invoke_runs_a_tool_for_a_session(start):
    gateway = start()
    client = await connect(gateway)
    try:
        result = await client.call("tools.invoke", {"sessionKey": "main", "tool": "test_sleep", "args": {"ms": 1, "text": "x"}})
        assert result == {"ok": True, "tool": "test_sleep", "result": {"text": "x", "sleptMs": 1}}
        with pytest.raises(GatewayCallError) as bad:
            await client.call("tools.invoke", {"sessionKey": "main", "tool": "test_sleep", "args": {}})
        assert bad.value.message.startswith("invalid test_sleep params")
    finally:
        await client.close()


# --- the OpenAI-compatible provider, system events ----------------------------------------


def fake_config(server: FakeOpenAI) -> dict:
    return {"models": {"providers": {"fake": server.provider_config()}}, "agents": {"defaults": {"model": "fake/fake-model"}}}


@sync_to_async
def add_system_event(text: str, key: str = MAIN) -> None:
    SystemEvent.objects.create(session_key=key, agent_id="main", text=text)


def user_texts(body: dict) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "user"]


async def test_system_events_before_and_during_a_turn_reach_the_next_model_step(start):
    """Queued before: prepended to the prompt of step 1; queued during a tool: in step 2 only."""
    script = [Reply(tool_calls=[{"id": "call_1", "name": "test_sleep", "arguments": {"ms": 600, "text": "t"}}]),
              Reply(text="all done", chunk_size=3)]  # fmt: skip
    with FakeOpenAI(script) as server:
        gateway = start(config=fake_config(server))
        client = await connect(gateway)
        try:
            await client.call("sessions.messages.subscribe", {"key": "main"})
            await add_system_event("before-event")
            await send(client, "hello", "e1")
            await client.wait_event("agent", tool_phase("call_1", "start"))
            await add_system_event("during-event")
            final = await client.wait_event("chat", final_of("e1"))
            assert final["payload"]["message"]["content"][0]["text"] == "all done"
        finally:
            await client.close()
        first, second = server.wait_requests(2)
    assert first["stream"] is True and first["stream_options"] == {"include_usage": True}
    assert first["tool_choice"] == "auto" and "test_sleep" in [t["function"]["name"] for t in first["tools"]]
    [prompt] = user_texts(first)
    assert prompt.startswith("System: [") and "] before-event\n\nhello" in prompt
    assert "during-event" not in json.dumps(first)
    assert user_texts(second)[-1].startswith("System: [") and user_texts(second)[-1].endswith("] during-event")
    assert [m["role"] for m in second["messages"]][-3:] == ["assistant", "tool", "user"]
    consumed = await sync_to_async(lambda: list(SystemEvent.objects.values_list("consumed_by_run_id", flat=True)))()
    assert consumed == ["e1", "e1"]
    run = await run_row("e1")
    assert run.usage == {"inputTokens": 22, "outputTokens": 14, "totalTokens": 36}


async def test_openai_provider_failure_ends_the_run_with_an_error(start):
    with FakeOpenAI([Reply(status=500, text="boom")]) as server:
        gateway = start(config=fake_config(server))
        client = await connect(gateway)
        try:
            await send(client, "hello", "x1")
            event = await client.wait_event("chat", final_of("x1"), timeout=20)
        finally:
            await client.close()
    assert event["payload"]["state"] == "error" and "LLM request failed" in event["payload"]["errorMessage"]
    assert (await run_row("x1")).error["code"] == "MODEL_ERROR"


# --- leases and recovery ------------------------------------------------------------------


async def test_a_run_whose_engine_was_killed_is_recovered_once_by_another_engine(start):
    env = {"OPENCLAW_ENGINE_LEASE_S": "1"}
    first = start(env=env)
    client = await connect(first)
    await send(client, "slow first", "k1")
    await client.wait_event("agent", started("k1"))
    await client.close()
    first.stop(signal.SIGKILL)
    assert (await run_row("k1")).status == "running"
    second = start(env=env)
    run = await wait_status("k1", "ok", timeout=15)
    assert run.status == "ok" and run.attempts == 2 and run.lease_owner != ""
    assert [t for r, t in await transcript() if r == "user"] == ["slow first"]
    second.stop()


@sync_to_async
def lost_run(attempts: int) -> None:
    from django.utils import timezone

    from sessions_app.services.sessions import session_ensure

    session, _ = session_ensure(key=MAIN)
    Run.objects.create(run_id="lost", session=session, session_key=MAIN, agent_id="main", status="running",
                       attempts=attempts, lease_owner="dead-engine", input={"message": "hi"},
                       lease_expires_at=timezone.now() - timezone.timedelta(seconds=5))  # fmt: skip
    session.active_run_id, session.state = "lost", "busy"
    session.save(update_fields=["active_run_id", "state"])


async def test_a_run_lost_twice_ends_with_an_error(start):
    await lost_run(attempts=2)
    gateway = start()
    run = await wait_status("lost", "error")
    assert run.error["code"] == "ENGINE_LOST"
    session = await sync_to_async(lambda: run.session.__class__.objects.get(key=MAIN))()
    assert session.active_run_id is None and session.state == "idle"
    gateway.stop()


# --- resume -------------------------------------------------------------------------------


async def test_resume_after_reconnect_gets_exactly_the_missed_events(start):
    gateway = start()
    client = await connect(gateway)
    await send(client, "one", "m1")
    final = await client.wait_event("chat", final_of("m1"))
    await asyncio.sleep(0.3)
    last_seen = max(f["payload"]["sessionSeq"] for f in [*client.events, final] if "sessionSeq" in f.get("payload", {}))
    await client.close()
    other = await connect(gateway)
    await send(other, "two", "m2")
    await other.wait_event("chat", final_of("m2"))
    await other.close()
    missed = await sync_to_async(lambda: list(SessionEvent.objects.filter(seq__gt=last_seen).order_by("seq").values_list("seq", flat=True)))()
    back = await connect(gateway)
    try:
        result = await back.call("sessions.messages.subscribe", {"key": "main", "afterSeq": last_seen})
        assert result["replayed"] == len(missed) > 0
        replayed = [f["payload"]["sessionSeq"] for f in back.events if "sessionSeq" in f.get("payload", {})]
        assert replayed == missed
        await send(back, "three", "m3")
        await back.wait_event("chat", final_of("m3"))
        seqs = [f["payload"]["sessionSeq"] for f in back.events if "sessionSeq" in f.get("payload", {})]
        assert len(seqs) == len(set(seqs))
    finally:
        await back.close()


# --- the agent method, commands, the gateway command ------------------------------------


class AllResponses(GatewayClient):
    """Keeps every response frame (the agent method answers twice with one id)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.responses: list[dict] = []

    def _route(self, message: dict) -> None:
        if message.get("type") == "res":
            self.responses.append(message)
        super()._route(message)


async def test_agent_answers_accepted_then_final(start):
    gateway = start()
    client = AllResponses(gateway.ws_url)
    await client.connect(token=gateway.token)
    try:
        res = await client.request("agent", {"message": "hey", "idempotencyKey": "g1", "agentId": "main"})
        assert res["payload"]["status"] == "accepted" and res["payload"]["runId"] == "g1"
        deadline = asyncio.get_running_loop().time() + 10
        while len([r for r in client.responses if r["id"] == res["id"]]) < 2:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        final = [r for r in client.responses if r["id"] == res["id"]][1]
        assert final["ok"] and final["payload"]["status"] == "ok" and final["payload"]["summary"] == "completed"
        assert final["payload"]["result"]["payloads"][0]["text"].endswith("You said: hey")
        replay = await client.call("agent", {"message": "hey", "idempotencyKey": "g1"})
        assert replay["status"] == "ok"
        for params, message in [
            ({"agentId": "ghost"}, 'unknown agent id "ghost"'),
            ({"agentId": "main", "sessionKey": "agent:other:main"}, 'unknown agent id "other"'),
            ({"sessionKey": "agent::x"}, 'invalid agent params: malformed session key "agent::x"'),
        ]:
            with pytest.raises(GatewayCallError) as bad:
                await client.call("agent", {"message": "m", "idempotencyKey": str(uuid.uuid4()), **params})
            assert bad.value.code == "INVALID_REQUEST" and bad.value.message == message
    finally:
        await client.close()


async def test_agent_rejects_a_key_of_another_agent(start):
    gateway = start(config={"agents": {"list": [{"id": "main", "default": True}, {"id": "ops"}]}})
    client = await connect(gateway)
    try:
        with pytest.raises(GatewayCallError) as bad:
            await client.call("agent", {"message": "m", "idempotencyKey": "z", "agentId": "ops", "sessionKey": MAIN})
        assert bad.value.message == 'agent "ops" does not match session key agent "main"'
    finally:
        await client.close()


async def test_status_queue_and_new_commands(start):
    gateway = start()
    client = await connect(gateway)
    try:
        assert (await send(client, "hello", "n1"))["status"] == "started"
        await client.wait_event("chat", final_of("n1"))
        assert (await send(client, "/queue collect debounce:2s cap:5", "n2"))["status"] == "ok"
        reply = await client.wait_event("chat", final_of("n2"))
        assert reply["payload"]["message"]["content"][0]["text"] == "Queue: mode=collect debounce=2000ms cap=5 drop=summarize"
        await send(client, "/status", "n3")
        status = await client.wait_event("chat", final_of("n3"))
        assert "Model: offline/scripted" in status["payload"]["message"]["content"][0]["text"]
        await send(client, "/new", "n4")
        await client.wait_event("chat", final_of("n4"))
        assert await transcript() == [("assistant", "New session started.")]
    finally:
        await client.close()


def test_gateway_all_roles_stop_within_a_few_seconds(gateway_factory):
    """--role all starts daphne, the engine and django-q2; SIGTERM stops them all quickly."""
    gateway = gateway_factory(args=("--role", "all"))
    time.sleep(2)
    ps = subprocess.run(["ps", "-o", "pid=", "--ppid", str(gateway.process.pid)], capture_output=True, text=True)
    children = [int(pid) for pid in ps.stdout.split()]
    assert children, "the django-q2 cluster runs as a child"
    started_at = time.monotonic()
    assert gateway.stop(signal.SIGTERM, timeout=10) is not None
    assert time.monotonic() - started_at < 8
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_sessions_send_steer_and_abort(start):
    """sessions.send needs an existing session; sessions.steer interrupts; sessions.abort stops."""
    gateway = start()
    client = await connect(gateway)
    try:
        with pytest.raises(GatewayCallError) as missing:
            await client.call("sessions.send", {"key": "agent:main:nobody", "message": "hi"})
        assert missing.value.message == "session not found: agent:main:nobody"
        await send(client, "hello", "v0")
        await client.wait_event("chat", final_of("v0"))
        sent = await client.call("sessions.send", {"key": "main", "message": "slow first", "idempotencyKey": "v1"})
        assert sent == {"runId": "v1", "status": "started", "key": MAIN}
        await client.wait_event("agent", started("v1"))
        steer = await client.call("sessions.steer", {"key": "main", "message": "instead", "idempotencyKey": "v2"})
        assert steer["interruptedActiveRun"] is True
        assert (await client.wait_event("chat", final_of("v1")))["payload"]["state"] == "aborted"
        await client.wait_event("chat", final_of("v2"))
        await client.call("sessions.send", {"key": "main", "message": "slow first", "idempotencyKey": "v3"})
        await client.wait_event("agent", started("v3"))
        assert await client.call("sessions.abort", {"key": "main"}) == {"ok": True, "abortedRunId": "v3", "status": "aborted"}
        await client.wait_event("chat", final_of("v3"))
        assert await client.call("sessions.abort", {"key": "main"}) == {"ok": True, "abortedRunId": None, "status": "no-active-run"}
    finally:
        await client.close()


async def test_a_graceful_stop_requeues_the_running_turn_and_a_restart_finishes_it(start):
    gateway = start()
    client = await connect(gateway)
    await send(client, "slow first", "g-stop")
    await client.wait_event("agent", started("g-stop"))
    await client.close()
    gateway.stop(signal.SIGTERM)
    run = await run_row("g-stop")
    assert run.status == "queued" and run.lease_owner is None
    start()
    assert (await wait_status("g-stop", "ok", timeout=15)).status == "ok"


async def test_a_run_past_its_timeout_ends_timeout(start):
    gateway = start(config={"agents": {"defaults": {"timeoutSeconds": 1}}})
    client = await connect(gateway)
    try:
        await send(client, "slow first", "to1")
        event = await client.wait_event("chat", final_of("to1"))
        assert event["payload"]["state"] == "error" and event["payload"]["stopReason"] == "timeout"
        run = await run_row("to1")
        assert run.status == "timeout" and run.error["code"] == "AGENT_TIMEOUT"
        assert (await client.call("agent.wait", {"runId": "to1", "timeoutMs": 0}))["status"] == "timeout"
    finally:
        await client.close()


async def test_sessions_changed_reaches_a_subscriber_once_per_phase(start):
    """A connection in both the sessions group and the session's group sees each phase once."""
    gateway = start()
    client = await connect(gateway)
    try:
        await client.call("sessions.subscribe", {})
        await send(client, "hello", "sc1")
        await client.wait_event("chat", final_of("sc1"))
        await asyncio.sleep(0.5)
        phases = [f["payload"].get("phase") for f in client.events
                  if f.get("event") == "sessions.changed" and f["payload"].get("runId") == "sc1"]  # fmt: skip
        assert phases == ["start", "end"]
    finally:
        await client.close()


async def test_engine_role_alone_runs_queued_turns_and_stops_on_sigterm(transactional_db, tmp_path, rules_file):
    """``gateway --role engine`` serves no HTTP; it claims runs from the database (poll)."""
    from tests.support.live import ROOT, database_url

    (tmp_path / "openclaw.json").write_text("{}")
    env = {**os.environ, "DATABASE_URL": database_url(), "OPENCLAW_STATE_DIR": str(tmp_path),
           "OPENCLAW_CONFIG_PATH": str(tmp_path / "openclaw.json"), "DJANGO_SECRET_KEY": "x",
           "OPENCLAW_ENGINE_POLL_S": "0.2", "OPENCLAW_OFFLINE_RULES": str(rules_file)}  # fmt: skip
    env.pop("OPENCLAW_TEST_DB_NAME", None)
    process = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "gateway", "--role", "engine"], env=env,
                               cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        from sessions_app.services.chat import chat_send

        await sync_to_async(chat_send)(session_key=MAIN, message="from the queue", idempotency_key="eng1")
        run = await wait_status("eng1", "ok", timeout=20)
        assert run.status == "ok" and run.output["text"].endswith("You said: from the queue")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        started = time.monotonic()
        process.wait(timeout=10)
    assert time.monotonic() - started < 5 and process.returncode is not None

"""sessions_send end to end: real gateway processes, the offline scripted model for the
callees and a real local OpenAI-compatible server for the caller, so the tests see what
the caller's model was given.

The seed 002 incident (issue #86586) as written: a cron caller fires two parallel
``sessions_send`` calls; callee A answers fast and sends a ``[TASK-COMPLETE]`` pingback
to the caller's run-scoped key; callee B answers after 3 s. The pingback must be in the
caller's model context before its run ends; with the caller's run already ended it goes
to the next run of the durable parent; with the gateway killed in between it survives.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest
from asgiref.sync import sync_to_async

from sessions_app.models import Delivery, Run, TranscriptEntry
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.ws import GatewayClient, connect

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

RE_PORTAL = "agent:re-portal:telegram:direct:8035547811"
WEB_RESEARCH = "agent:web-research:telegram:direct:8035547811"
ANNOUNCE_RULE = {"match": "Agent-to-agent announce step", "reply": "ANNOUNCE_SKIP"}
CALLEE_RULES = [
    ANNOUNCE_RULE,
    # Callee A: pingback to the caller's run-scoped key, then its answer.
    {"regex": r"\[occupancy(?P<slow>-slow)?\].*callback=(\S+)", "delayMs": 300, "toolCalls": [
        {"id": "call_pingback", "name": "sessions_send",
         "arguments": {"sessionKey": "{2}", "message": "[TASK-COMPLETE] re-portal: April occupancy 93%",
                       "timeoutSeconds": 0}}]},
    {"on": "tool", "regex": "leasing-ops:cron", "reply": "occupancy 93%"},
    # Callee B: slow.
    {"match": "[municode]", "delayMs": 3000, "reply": "fees $42"},
    {"match": "[municode-slow]", "delayMs": 8000, "reply": "fees $42"},
    # Fan-out targets: answer after i*100 ms with a unique marker.
    {"regex": r"\[fan (\d+)\] delay=(\d+)", "reply": "R{1}X"},
    {"match": "Reply from", "reply": "noted"},
    {"regex": r"TASK-COMPLETE", "reply": "parent saw the pingback"},
]  # fmt: skip


def callee_rules(fan_delays: dict[int, int] | None = None) -> list[dict]:
    rules = list(CALLEE_RULES)
    for index, delay in (fan_delays or {}).items():  # per-target delays (the first match wins)
        rules.insert(1, {"regex": rf"\[fan ({index:02d})\] delay=", "reply": "R{1}X", "delayMs": delay})
    return rules


def gateway_config(fake: FakeOpenAI, *, turns: int = 0) -> dict:
    return {
        "models": {"providers": {"fake": fake.provider_config()}},
        "agents": {"list": [
            {"id": "leasing-ops", "default": True, "model": "fake/fake-model"},
            {"id": "re-portal"}, {"id": "web-research"}, {"id": "main"},
        ]},
        "tools": {"sessions": {"visibility": "all"}, "agentToAgent": {"enabled": True, "allow": ["*"]}},
        "session": {"agentToAgent": {"maxPingPongTurns": turns}},
    }  # fmt: skip


@pytest.fixture
def rules_file(tmp_path):
    def write(rules: list[dict]):
        path = tmp_path / f"rules-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps({"rules": rules}))
        return path

    return write


@pytest.fixture
def start(gateway_factory, rules_file):
    def run(fake: FakeOpenAI, *, rules=None, env=None, turns: int = 0):
        full_env = {"OPENCLAW_OFFLINE_RULES": str(rules_file(rules or callee_rules())),
                    "OPENCLAW_ENGINE_POLL_S": "0.2", **(env or {})}  # fmt: skip
        return gateway_factory(config=gateway_config(fake, turns=turns), args=("--role", "web,engine"), env=full_env)

    return run


def texts(body: dict) -> str:
    return "\n".join(str(m.get("content") or "") for m in body["messages"])


def caller_model(*, a_message: str, b_message: str, a_timeout: int = 30) -> callable:
    """The caller (leasing-ops): two parallel sends, then an answer from what it was given."""

    def reply(body: dict) -> Reply:
        last = body["messages"][-1]
        if last["role"] == "user" and "[cron:" in str(last["content"]) and "TASK-COMPLETE" not in str(last["content"]):
            callback = re.search(r"callback=(\S+)", str(last["content"]))[1]
            return Reply(tool_calls=[
                {"id": "call_re_portal", "name": "sessions_send",
                 "arguments": {"sessionKey": RE_PORTAL, "message": f"{a_message} callback={callback}",
                               "timeoutSeconds": a_timeout}},
                {"id": "call_web_research", "name": "sessions_send",
                 "arguments": {"sessionKey": WEB_RESEARCH, "message": b_message, "timeoutSeconds": 30}},
            ])  # fmt: skip
        seen = texts(body)
        if "TASK-COMPLETE" in seen:
            parts = [part for part in ("occupancy 93%", "fees $42") if part in seen]
            return Reply(text=f"BILLING READY: {', '.join(parts)} (TASK-COMPLETE seen)")
        return Reply(text="Waiting on re-portal occupancy result for April 2026 utility billing.")

    return reply


@sync_to_async
def wait_rows(predicate, timeout: float = 30, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def run_done(run_id: str):
    return lambda: Run.objects.filter(run_id=run_id, status__in=Run.TERMINAL).first()


def pingback_row() -> Delivery | None:
    return Delivery.objects.filter(payload__text__icontains="[TASK-COMPLETE]").first()


@sync_to_async
def transcript(key: str) -> list[TranscriptEntry]:
    return list(TranscriptEntry.objects.filter(session__key=key, archived=False).order_by("seq"))


async def start_caller(client: GatewayClient, key: str, run_id: str, job: str) -> None:
    message = f"[cron:{job}] April 2026 utility breakdown. callback={key}"
    ack = await client.call("chat.send", {"sessionKey": key, "message": message, "idempotencyKey": run_id})
    assert ack["runId"] == run_id


async def test_seed_002_pingback_reaches_the_blocked_callers_context(start):
    """Parallel sends resolve on their own; the pingback is in the caller's context before its run ends."""
    key, run_id = "agent:leasing-ops:cron:billing:run:e08e19ff", "caller-run-1"
    with FakeOpenAI(caller_model(a_message="[occupancy] April occupancy please.", b_message="[municode] Atlanta fees")) as fake:
        gateway = start(fake)
        client = await connect(gateway)
        try:
            await start_caller(client, key, run_id, "billing")
            run = await wait_rows(run_done(run_id))
        finally:
            await client.close()
        assert (run.status, run.output["text"]) == ("ok", "BILLING READY: occupancy 93%, fees $42 (TASK-COMPLETE seen)")
        second_step = fake.requests[1]
        assert "[TASK-COMPLETE] re-portal: April occupancy 93%" in texts(second_step)
    pingback = await sync_to_async(pingback_row)()
    assert (pingback.state, pingback.consumed_by_run_id, pingback.target_session_key) == ("consumed", run_id, key)
    entries = await transcript(key)
    tools = [e for e in entries if e.role == "tool"]
    results = {e.provenance["toolCallId"]: json.loads(e.content[0]["text"]) for e in tools}
    assert results["call_re_portal"]["status"] == results["call_web_research"]["status"] == "ok"
    assert (results["call_re_portal"]["reply"], results["call_web_research"]["reply"]) == ("occupancy 93%", "fees $42")
    by_call = {e.provenance["toolCallId"]: e for e in tools}
    fast, slow = by_call["call_re_portal"], by_call["call_web_research"]
    assert (slow.created_at - fast.created_at).total_seconds() > 1.5, "the fast result waited for its slow sibling"
    pinged = [e for e in entries if "[TASK-COMPLETE]" in e.text]
    assert len(pinged) == 1 and pinged[0].role == "user"
    assert pinged[0].seq < entries[-1].seq and entries[-1].role == "assistant"


async def test_seed_002_pingback_after_the_callers_run_ended_goes_to_the_parent(start):
    """The run-scoped target ended: the durable parent's next run reads the pingback (PR #86638)."""
    key, run_id, parent = "agent:leasing-ops:cron:late:run:5f1c", "caller-run-2", "agent:leasing-ops:cron:late"
    rules = callee_rules()
    rules.insert(1, {**rules[1], "delayMs": 2500, "regex": r"\[occupancy-slow\].*callback=(\S+)",
                     "toolCalls": [{**rules[1]["toolCalls"][0], "arguments": {**rules[1]["toolCalls"][0]["arguments"],
                                                                             "sessionKey": "{1}"}}]})  # fmt: skip

    def caller(body: dict) -> Reply:
        last = body["messages"][-1]
        if last["role"] == "user" and "[cron:late]" in str(last["content"]):
            callback = re.search(r"callback=(\S+)", str(last["content"]))[1]
            return Reply(tool_calls=[{"id": "call_a", "name": "sessions_send", "arguments": {
                "sessionKey": RE_PORTAL, "message": f"[occupancy-slow] please callback={callback}", "timeoutSeconds": 1}}])
        seen = texts(body)
        return Reply(text="parent saw: " + ("TASK-COMPLETE" if "TASK-COMPLETE" in seen else "")
                     + (" occupancy 93%" if "occupancy 93%" in seen else "") if "Reply from" in seen or "TASK" in seen
                     else "Waiting on re-portal occupancy result")  # fmt: skip

    with FakeOpenAI(caller) as fake:
        gateway = start(fake, rules=rules)
        client = await connect(gateway)
        try:
            await start_caller(client, key, run_id, "late")
            run = await wait_rows(run_done(run_id))
            assert run.output["text"] == "Waiting on re-portal occupancy result"
            pingback = await wait_rows(lambda: Delivery.objects.filter(
                payload__text__icontains="[TASK-COMPLETE]", state="consumed").first())  # fmt: skip
            late_reply = await wait_rows(lambda: Delivery.objects.filter(kind="pingback", state="consumed").first())
        finally:
            await client.close()
    assert (pingback.target_session_key, pingback.payload["routes"][0]["from"]) == (parent, key)
    reader = await sync_to_async(Run.objects.get)(run_id=pingback.consumed_by_run_id)
    assert reader.session_key == parent
    assert late_reply.target_session_key == parent and "occupancy 93%" in late_reply.payload["text"]
    # (the announce step that follows quotes the request; it is not the message itself)
    parent_texts = [e.text for e in await transcript(parent) if e.role == "user" and "announce step" not in e.text]
    assert sum("[TASK-COMPLETE]" in t for t in parent_texts) == 1, parent_texts
    assert sum("occupancy 93%" in t and t.startswith("Reply from") for t in parent_texts) == 1
    assert not any("[TASK-COMPLETE]" in e.text for e in await transcript(key))


async def test_seed_002_pingback_survives_a_gateway_restart(start):
    """SIGKILL while the caller waits on the slow sibling: the stored pingback is read by
    the caller's run once a new gateway takes it over, and the slow reply is not lost."""
    key, run_id, parent = "agent:leasing-ops:cron:crash:run:77aa", "caller-run-3", "agent:leasing-ops:cron:crash"
    env = {"OPENCLAW_ENGINE_LEASE_S": "3"}
    with FakeOpenAI(caller_model(a_message="[occupancy] April occupancy please.", b_message="[municode-slow] fees")) as fake:
        first = start(fake, env=env)
        client = await connect(first)
        try:
            await start_caller(client, key, run_id, "crash")
            stored = await wait_rows(lambda: (p := pingback_row()) is not None and p.state == "delivered" and p)
        finally:
            await client.close()
        first.stop(sig=9)
        assert stored.target_run_id == run_id
        second = start(fake, env=env)
        run = await wait_rows(run_done(run_id), timeout=60)
        assert run.status == "ok" and "TASK-COMPLETE seen" in run.output["text"]
        assert run.attempts == 2
        pingback = await sync_to_async(pingback_row)()
        assert (pingback.state, pingback.consumed_by_run_id) == ("consumed", run_id)
        late = await wait_rows(lambda: Delivery.objects.filter(kind="pingback", state="consumed",
                                                               payload__text__icontains="fees $42").first(), timeout=60)  # fmt: skip
        second.stop()
    assert late.target_session_key == parent
    assert sum("[TASK-COMPLETE]" in e.text for e in await transcript(key)) == 1


async def test_fan_out_of_twenty_sends_gets_every_reply_exactly_once(start):
    """Twenty parallel sends, half answered inline and half after the wait ran out (pingbacks):
    each reply reaches the caller's session exactly once. Odd targets answer after 3 s to a
    caller that waits 1 s; even ones answer at once to a caller that waits 30 s."""
    caller_key, run_id, count = "agent:leasing-ops:main", "fan-run", 20
    delays = {index: 3000 if index % 2 else 0 for index in range(count)}

    def caller(body: dict) -> Reply:
        last = body["messages"][-1]
        if last["role"] == "user" and "fan out" in str(last["content"]):
            return Reply(tool_calls=[{"id": f"call_{i}", "name": "sessions_send", "arguments": {
                "sessionKey": f"agent:main:worker-{i}", "message": f"[fan {i:02d}] delay={delays[i]}",
                "timeoutSeconds": 1 if i % 2 else 30}}
                for i in range(count)])  # fmt: skip
        return Reply(text="noted")

    with FakeOpenAI(caller) as fake:
        gateway = start(fake, rules=callee_rules({i: d for i, d in delays.items()}))
        client = await connect(gateway)
        try:
            ack = await client.call("chat.send", {"sessionKey": caller_key, "message": "fan out", "idempotencyKey": run_id})
            assert ack["runId"] == run_id
            await wait_rows(run_done(run_id))
            await wait_rows(lambda: Delivery.objects.filter(kind="send").count() == count and not Delivery.objects.filter(
                kind__in=("send", "pingback"), state__in=("pending", "delivered")).exists()
                and Delivery.objects.filter(kind="send", reply__isnull=False).count() == count, timeout=60)  # fmt: skip
            await wait_rows(lambda: not Run.objects.filter(session_key=caller_key, status__in=("queued", "running")).exists()
                            and not Delivery.objects.filter(kind="pingback", state__in=("pending", "delivered")).exists())
        finally:
            await client.close()
    entries = [e for e in await transcript(caller_key) if e.role in ("tool", "user")]
    statuses = [json.loads(e.content[0]["text"])["status"] for e in entries if e.role == "tool"]
    assert (statuses.count("ok"), statuses.count("accepted")) == (count // 2, count // 2)
    for index in range(count):
        marker = f"R{index:02d}X"
        assert sum(marker in e.text for e in entries) == 1, marker
    sends = await sync_to_async(list)(Delivery.objects.filter(kind="send"))
    assert all(d.state == "consumed" and d.reply["text"] == f"R{d.payload['text'][5:7]}X" for d in sends)
    pingbacks = await sync_to_async(Delivery.objects.filter(kind="pingback").count)()
    assert pingbacks == statuses.count("accepted")
    for index in range(count):
        worker = [e for e in await transcript(f"agent:main:worker-{index}") if e.role == "user" and e.text.startswith("[fan")]
        assert len(worker) == 1


async def test_tools_invoke_runs_the_session_tools(start):
    """tools.invoke: sessions_send (ok, forbidden, error), sessions_list and sessions_history."""
    with FakeOpenAI([Reply(text="unused")]) as fake:
        gateway = start(fake)
        client = await connect(gateway)
        try:
            async def invoke(tool: str, args: dict, key: str = "agent:main:main") -> dict:
                response = await client.call("tools.invoke", {"sessionKey": key, "tool": tool, "args": args}, timeout=30)
                return response["result"]

            ok = await invoke("sessions_send", {"sessionKey": "agent:main:helper", "message": "[fan 07] delay=0"})
            assert (ok["status"], ok["reply"], ok["delivery"]["status"]) == ("ok", "R07X", "delivered")
            row = await client.call("deliveries.get", {"id": ok["delivery"]["id"]})
            assert (row["state"], row["reply"]["text"], row["consumedByRunId"]) == ("consumed", "R07X", ok["runId"])
            cross_agent = await invoke("sessions_send", {"sessionKey": "agent:main:helper", "message": "hi"},
                                       key="agent:re-portal:telegram:direct:1")
            assert cross_agent["status"] == "ok"  # visibility=all with agent-to-agent allowed
            missing = await invoke("sessions_send", {"label": "nobody", "message": "hi"})
            assert (missing["status"], missing["error"]) == ("error", "No session found with label: nobody")
            listed = await invoke("sessions_list", {"limit": 50})
            assert "agent:main:helper" in {row["sessionKey"] for row in listed["sessions"]}
            history = await invoke("sessions_history", {"sessionKey": "agent:main:helper"})
            assert [m["role"] for m in history["messages"]][:2] == ["user", "assistant"]
            assert history["messages"][1]["content"][0]["text"] == "R07X"
        finally:
            await client.close()


async def test_visibility_tree_forbids_an_unrelated_session_over_the_wire(gateway_factory, rules_file):
    config = {"agents": {"list": [{"id": "main", "default": True}]}, "tools": {"sessions": {"visibility": "tree"}}}
    gateway = gateway_factory(config=config, args=("--role", "web,engine"),
                              env={"OPENCLAW_OFFLINE_RULES": str(rules_file(callee_rules()))})  # fmt: skip
    client = await connect(gateway)
    try:
        result = (await client.call("tools.invoke", {"sessionKey": "main", "tool": "sessions_send",
                                                     "args": {"sessionKey": "agent:main:other", "message": "hi"}}))["result"]  # fmt: skip
        assert result["status"] == "forbidden"
        assert result["error"] == ("Session send visibility is restricted to the current session tree "
                                   "(tools.sessions.visibility=tree).")  # fmt: skip
        assert (await client.call("deliveries.list", {}))["deliveries"] == []
    finally:
        await client.close()


async def test_ping_pong_over_the_wire_stops_on_reply_skip(gateway_factory, rules_file):
    """Round one, turn 1 on the requester, REPLY_SKIP from the target, the announce step."""
    rules = [
        {"match": "Agent-to-agent announce step", "reply": "Announcing: all settled"},
        {"regex": "Turn 1 of 3", "reply": "requester follow-up"},
        {"regex": "Turn 2 of 3", "reply": "REPLY_SKIP"},
        {"match": "question", "reply": "answer one"},
    ]
    config = {"agents": {"list": [{"id": "main", "default": True}]}, "tools": {"sessions": {"visibility": "agent"}},
              "session": {"agentToAgent": {"maxPingPongTurns": 3}}}  # fmt: skip
    gateway = gateway_factory(config=config, args=("--role", "web,engine"), env={"OPENCLAW_OFFLINE_RULES": str(rules_file(rules))})
    client = await connect(gateway)
    try:
        result = (await client.call("tools.invoke", {"sessionKey": "main", "tool": "sessions_send",
                                                     "args": {"sessionKey": "agent:main:peer", "message": "question"}},
                                    timeout=30))["result"]  # fmt: skip
        assert (result["status"], result["reply"]) == ("ok", "answer one")
        announce = await wait_rows(lambda: Run.objects.filter(run_id__endswith=":announce", status="ok").first())
    finally:
        await client.close()
    assert announce.output["text"] == "Announcing: all settled"
    steps = await sync_to_async(list)(
        Run.objects.filter(run_id__startswith="a2a:").order_by("created_at").values_list("run_id", "session_key"))
    assert [(run_id.rsplit(":", 1)[-1], key) for run_id, key in steps] == [
        ("1", "agent:main:main"), ("2", "agent:main:peer"), ("announce", "agent:main:peer")]
    # The run-finished hook marks the announce step after the run row turns ok: wait for it.
    step = await wait_rows(lambda: Delivery.objects.filter(consumed_by_run_id=announce.run_id,
                                                           reply__has_key="posted").first())  # fmt: skip
    assert step.reply["posted"] is True

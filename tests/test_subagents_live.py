"""Sub-agents end to end: real gateway processes, the scripted offline model calling
``sessions_spawn`` / ``subagents`` / ``sessions_send``, announces read by the parent's
next model step (spec-b §1–§3, seeds 001 and 003)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from sessions_app.models import Delivery, Run, Session, SubagentRun, TranscriptEntry
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.live import write_rules
from tests.support.ws import connect, eventually

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

MAIN = "agent:main:main"
ANNOUNCE_TO_MAIN = r"ready for user delivery"
RULES = [
    # main, asked by the user
    {"on": "user", "match": "please spawn widgets", "toolCalls": [{"name": "sessions_spawn", "arguments": {
        "task": "count the widgets", "label": "widgets", "cleanup": "delete"}}]},
    {"on": "user", "match": "please work slowly", "reply": "slow work done", "delayMs": 4000},
    {"on": "user", "match": "[Queued announce messages while agent was busy]", "reply": "Batch relayed"},
    {"on": "user", "match": "please spawn a keeper", "toolCalls": [{"name": "sessions_spawn", "arguments": {
        "task": "research the widget market", "label": "market", "cleanup": "keep"}}]},
    # children (a steered child still has its first task in the latest input: steer rules first)
    {"on": "user", "match": "focus on blue", "reply": "blue widgets: 7"},
    {"on": "user", "match": "[Subagent Task]: count the widgets", "reply": "There are 42 widgets."},
    {"on": "user", "match": "[Subagent Task]: stay silent", "reply": "NO_REPLY"},
    {"on": "user", "match": "[Subagent Task]: slow leaf work", "reply": "leaf done", "delayMs": 6000},
    {"on": "user", "match": "[Subagent Task]: dawdle", "reply": "stale dawdling output", "delayMs": 6000},
    {"on": "user", "match": "[Subagent Task]: outlive", "reply": "never said", "delayMs": 30000},
    {"on": "user", "match": "[Subagent Task]: quick leaf", "reply": "leaf found gold"},
    {"on": "user", "match": "[Subagent Task]: try to spawn", "toolCalls": [{"name": "sessions_spawn",
        "arguments": {"task": "grandchild"}}]},
    {"on": "user", "match": "[Subagent Task]: orchestrate slowly", "toolCalls": [{"name": "sessions_spawn",
        "arguments": {"task": "slow leaf work", "label": "leaf"}}]},
    {"on": "user", "match": "[Subagent Task]: orchestrate", "toolCalls": [{"name": "sessions_spawn",
        "arguments": {"task": "quick leaf", "label": "leaf"}}]},
    {"on": "user", "regex": r"Your prior run ended while waiting[\s\S]*<<<BEGIN_UNTRUSTED_CHILD_RESULT>>>\n(.*)\n",
     "reply": "Orchestrator final: {1}"},
    {"on": "user", "match": "concise internal orchestration update", "reply": "NO_REPLY"},
    # seed 003 rounds on the kept child
    {"on": "user", "match": "[Subagent Task]: research the widget market", "reply": "round 1: market is 10k units"},
    {"on": "user", "regex": r"^follow-up (\d+)", "reply": "round {1}: refined with prior context"},
    # main reads a completion of its kept child and follows up, fire and forget
    {"on": "user", "regex": r"session_key: (agent:main:subagent:[0-9a-f-]+)[\s\S]*round 1: ", "toolCalls": [
        {"name": "sessions_send", "arguments": {"sessionKey": "{1}", "message": "follow-up 2", "timeoutSeconds": 0}}]},
    {"on": "user", "regex": r"session_key: (agent:main:subagent:[0-9a-f-]+)[\s\S]*round 2: ", "toolCalls": [
        {"name": "sessions_send", "arguments": {"sessionKey": "{1}", "message": "follow-up 3", "timeoutSeconds": 0}}]},
    {"on": "user", "regex": r"<<<BEGIN_UNTRUSTED_CHILD_RESULT>>>\n(.*)\n<<<END_UNTRUSTED_CHILD_RESULT>>>",
     "reply": "Relayed: {1}"},
    {"on": "tool", "reply": "ok, waiting"},
]  # fmt: skip


@pytest.fixture
def rules_file(tmp_path):
    return write_rules(tmp_path, RULES)


@pytest.fixture
def start(gateway_factory, rules_file):
    def run(config=None, roles="web,engine"):
        env = {"OPENCLAW_OFFLINE_RULES": str(rules_file), "OPENCLAW_ENGINE_POLL_S": "0.2"}
        return gateway_factory(config=config, args=("--role", roles), env=env)

    return run


async def invoke(client, tool, args, session="main"):
    reply = await client.call("tools.invoke", {"sessionKey": session, "tool": tool, "args": args})
    return reply["result"]


@sync_to_async
def transcript(key: str = MAIN) -> list[TranscriptEntry]:
    return list(TranscriptEntry.objects.filter(session__key=key, archived=False).order_by("seq"))


@sync_to_async
def announces() -> list[Delivery]:
    return list(Delivery.objects.filter(kind="announce").order_by("created_at"))


@sync_to_async
def registry(**filters) -> list[SubagentRun]:
    return list(SubagentRun.objects.filter(**filters).order_by("created_at"))


async def assistant_text(key: str, pattern: str, timeout: float = 20) -> str | None:
    async def probe():
        return next((e.text for e in await transcript(key) if e.role == "assistant" and re.search(pattern, e.text)),
                    None)  # fmt: skip

    return await eventually(probe, timeout=timeout)


async def test_spawn_child_runs_and_announce_reaches_the_parents_next_model_step(start):
    """The model spawns a child; its result is delivered into main's next model step as the
    exact task_completion text; main answers from it; cleanup delete removes the child."""
    client = await connect(start())
    try:
        await client.call("chat.send", {"sessionKey": "main", "message": "please spawn widgets", "idempotencyKey": "u1"})
        relayed = await assistant_text(MAIN, r"^Relayed: ")
        assert relayed == "Relayed: There are 42 widgets."
        [delivery] = await announces()
        entries = await transcript()
        [announce_entry] = [e for e in entries if e.provenance.get("deliveryKind") == "announce"]
        assert announce_entry.role == "user" and announce_entry.text == delivery.payload["text"]
        text = announce_entry.text
        [row] = await registry()
        assert delivery.idempotency_key == f"announce:v1:{row.child_session_key}:{row.run_id}"
        assert f"session_key: {row.child_session_key}\n" in text
        assert "task: widgets\nstatus: completed successfully\n" in text
        assert "<<<BEGIN_UNTRUSTED_CHILD_RESULT>>>\nThere are 42 widgets.\n<<<END_UNTRUSTED_CHILD_RESULT>>>" in text
        assert re.search(r"\nStats: runtime (\d+s|n/a) • tokens \S+ \(in \S+ / out \S+\)", text)
        assert "Follow-up:" not in text
        tool_result = next(e for e in entries if e.role == "tool")
        assert '"status": "accepted"' in tool_result.text and row.child_session_key in tool_result.text
        assert not await sync_to_async(Session.objects.filter(key=row.child_session_key).exists)()
        assert (row.announce_state, row.cleanup) == ("announced", "delete")
    finally:
        await client.close()


async def test_limits_depth_fan_out_and_allowlist_over_tools_invoke(start):
    gateway = start(config={"agents": {
        "defaults": {"subagents": {"maxChildrenPerAgent": 1}},
        "list": [{"id": "main", "subagents": {"allowAgents": ["research"]}}, {"id": "research"}, {"id": "ops"}],
    }})  # fmt: skip
    client = await connect(gateway)
    try:
        denied = await invoke(client, "sessions_spawn", {"task": "x", "agentId": "ops"})
        assert denied == {"status": "forbidden", "error": "agentId is not allowed for sessions_spawn (allowed: research)"}
        first = await invoke(client, "sessions_spawn", {"task": "dawdle", "agentId": "research"})
        assert first["status"] == "accepted" and first["childSessionKey"].startswith("agent:research:subagent:")
        full = await invoke(client, "sessions_spawn", {"task": "dawdle"})
        assert full["error"] == "sessions_spawn has reached max active children for this session (1/1)"
        # A leaf (depth 1 = maxSpawnDepth) has no sessions_spawn at all (spec-b §1.8).
        deep = await client.request("tools.invoke", {"sessionKey": first["childSessionKey"], "tool": "sessions_spawn",
                                                     "args": {"task": "x"}})  # fmt: skip
        assert deep["error"]["details"] == {"code": "TOOL_NOT_AVAILABLE", "tool": "sessions_spawn", "role": "leaf",
                                            "depth": 1}  # fmt: skip
        assert deep["error"]["message"] == "Tool not available: sessions_spawn (leaf sub-agent at depth 1)"
        bad = await client.request("tools.invoke", {"sessionKey": "main", "tool": "sessions_spawn",
                                                    "args": {"task": "x", "channel": "telegram"}})  # fmt: skip
        assert bad["error"]["message"] == (
            'sessions_spawn does not support "channel". Use "message" or "sessions_send" for channel delivery.'
        )
    finally:
        await client.close()


async def test_a_leaf_calling_sessions_spawn_by_name_gets_tool_not_available(start):
    """The leaf is not offered sessions_spawn; its model calling it anyway gets the stable
    error as the tool result, nothing is spawned, and the leaf still finishes and announces."""
    client = await connect(start())
    try:
        leaf = await invoke(client, "sessions_spawn", {"task": "try to spawn", "label": "eager"})
        assert await eventually(announces)
        tools = [e for e in await transcript(leaf["childSessionKey"]) if e.role == "tool"]
        assert len(tools) == 1 and "TOOL_NOT_AVAILABLE" in tools[0].text, [t.text for t in tools]
        assert "Tool not available: sessions_spawn (leaf sub-agent at depth 1)" in tools[0].text
        assert [r.child_session_key for r in await registry()] == [leaf["childSessionKey"]]
    finally:
        await client.close()


async def test_ordinary_completions_wait_in_the_busy_requesters_collect_queue_and_arrive_as_one_batch(start):
    """Spec-b §3.7 over the wire: two completions that do not expect a message
    (``subagents.spawn`` with ``expectsCompletionMessage: false``) end while the requester is
    busy in collect mode: its running turn does not read them; one queued announce turn
    does, after it, with the batch title and both results in one prompt."""
    client = await connect(start())
    try:
        await client.call("sessions.patch", {"key": "main", "queueMode": "collect", "queueDebounceMs": 300})
        await client.call("chat.send", {"sessionKey": "main", "message": "please work slowly", "idempotencyKey": "slow"})
        assert await eventually(lambda: sync_to_async(Run.objects.filter(run_id="slow", status="running").exists)())
        for label in ("a", "b"):
            spawned = await client.call("subagents.spawn", {"sessionKey": "main", "task": "quick leaf", "label": label,
                                                            "expectsCompletionMessage": False})  # fmt: skip
            assert spawned["status"] == "accepted"
        assert await assistant_text(MAIN, r"^Batch relayed$"), "the requester never relayed the batch"
        # The reply is in the transcript a moment before its run is recorded as ended.
        assert await eventually(lambda: sync_to_async(Run.objects.filter(input__queueMode="announce", status="ok").exists)())
        slow = await sync_to_async(Run.objects.get)(run_id="slow")
        [batch] = await sync_to_async(list)(Run.objects.filter(input__queueMode="announce"))
        assert (slow.status, batch.status) == ("ok", "ok") and batch.started_at >= slow.ended_at
        deliveries = await announces()
        assert [d.consumed_by_run_id for d in deliveries] == [batch.run_id, batch.run_id]
        assert {d.payload["announcePath"]["path"] for d in deliveries} == {"queued"}
        [prompt] = [e.text for e in await transcript() if e.role == "user" and e.run_id == batch.run_id]
        assert prompt.startswith("[Queued announce messages while agent was busy]") and prompt.count("leaf found gold") == 2
        assert not [e for e in await transcript() if e.run_id == "slow" and "leaf found gold" in e.text]
        assert {r.announce_path for r in await registry()} == {"queued"}
    finally:
        await client.close()


async def spawn_boss_with_a_running_leaf(client) -> dict:
    """An orchestrator ("boss") whose slow leaf is running; returns the spawn result."""
    boss = await invoke(client, "sessions_spawn", {"task": "orchestrate slowly", "label": "boss"})

    async def leaf_running():
        rows = await registry(requester_session_key=boss["childSessionKey"])
        return rows and (await sync_to_async(Run.objects.get)(run_id=rows[0].run_id)).status == "running"

    assert await eventually(leaf_running)
    return boss


async def test_kill_cascades_and_killed_runs_never_announce(start):
    gateway = start(config={"agents": {"defaults": {"subagents": {"maxSpawnDepth": 2}}}})
    client = await connect(gateway)
    try:
        boss = await spawn_boss_with_a_running_leaf(client)
        killed = await invoke(client, "subagents", {"action": "kill", "target": "boss"})
        assert (killed["status"], killed["cascadeKilled"]) == ("ok", 1)

        async def all_ended():
            runs = await sync_to_async(list)(Run.objects.filter(kind="subagent").values_list("status", flat=True))
            return all(s in ("aborted", "ok", "error") for s in runs) and runs

        assert await eventually(all_ended), gateway.log()[-4000:]
        await asyncio.sleep(1.0)
        assert {r.status for r in await registry()} == {"killed"}
        assert await announces() == []
        listing = await invoke(client, "subagents", {"action": "list"})
        assert listing["active"] == [] and [v["status"] for v in listing["recent"]] == ["killed"]
    finally:
        await client.close()


async def test_stop_in_the_requester_chat_stops_its_running_subagents(start):
    """``/stop`` over ``chat.send``: the orchestrator and its running leaf are stopped, the
    reply counts them, and neither ever announces."""
    gateway = start(config={"agents": {"defaults": {"subagents": {"maxSpawnDepth": 2}}}})
    client = await connect(gateway)
    try:
        boss = await spawn_boss_with_a_running_leaf(client)
        [leaf] = await registry(requester_session_key=boss["childSessionKey"])
        stopped = await client.call("chat.send", {"sessionKey": "main", "message": "/stop", "idempotencyKey": "stop-1"})
        assert stopped["subagentsKilled"] == [boss["childSessionKey"], leaf.child_session_key]
        assert await eventually(lambda: sync_to_async(Run.objects.filter(run_id=leaf.run_id, status="aborted").exists)())
        assert await assistant_text(MAIN, r"^Stopped \d+ run\(s\)\. Stopped 2 sub-agent\(s\)\.$")
        await asyncio.sleep(1.0)
        assert {r.status for r in await registry()} == {"killed"}
        assert await announces() == []
    finally:
        await client.close()


async def test_steer_restarts_the_child_and_only_the_new_output_is_announced(start):
    gateway = start()
    client = await connect(gateway)
    try:
        child = await invoke(client, "sessions_spawn", {"task": "dawdle", "label": "dawdler"})

        async def running():
            return (await sync_to_async(Run.objects.get)(run_id=child["runId"])).status == "running"

        assert await eventually(running)
        steered = await invoke(client, "subagents", {"action": "steer", "target": "dawdler",
                                                     "message": "focus on blue"})  # fmt: skip
        assert (steered["status"], steered["mode"]) == ("accepted", "restart")
        assert await assistant_text(MAIN, r"^Relayed: blue widgets: 7$")
        await asyncio.sleep(0.5)
        [delivery] = await announces()
        assert "stale dawdling output" not in delivery.payload["text"]
        assert (await sync_to_async(Run.objects.get)(run_id=child["runId"])).status == "aborted"
    finally:
        await client.close()


async def test_no_reply_child_suppresses_the_announce(start):
    client = await connect(start())
    try:
        child = await invoke(client, "sessions_spawn", {"task": "stay silent"})

        async def handled():
            rows = await registry(run_id=child["runId"])
            return rows[0] if rows and rows[0].cleanup_handled else None

        row = await eventually(handled)
        assert (row.status, row.announce_state) == ("ok", "skipped")
        await asyncio.sleep(0.5)
        assert await announces() == []
        assert [e for e in await transcript() if e.provenance.get("deliveryKind") == "announce"] == []
    finally:
        await client.close()


async def test_nested_orchestrator_gets_its_childrens_findings_before_announcing(start):
    client = await connect(start(config={"agents": {"defaults": {"subagents": {"maxSpawnDepth": 2}}}}))
    try:
        boss = await invoke(client, "sessions_spawn", {"task": "orchestrate", "label": "boss"})
        final = await assistant_text(MAIN, r"^Relayed: Orchestrator final: ", timeout=30)
        assert final == "Relayed: Orchestrator final: leaf found gold"
        wake = await sync_to_async(Run.objects.get)(run_id=f"{boss['runId']}:wake")
        assert "Child completion results:" in wake.input["message"] and "leaf found gold" in wake.input["message"]
        deliveries = await announces()
        assert [d.target_session_key for d in deliveries] == [boss["childSessionKey"], MAIN]
        assert deliveries[1].idempotency_key == f"announce:v1:{boss['childSessionKey']}:{boss['runId']}:wake"
    finally:
        await client.close()


async def test_seed_003_kept_child_is_followed_up_for_three_rounds(start):
    """spawn keep → announce with the child key and the sessions_send hint → follow-up with
    timeoutSeconds 0 → announced again (no hint), three rounds in one child transcript."""
    client = await connect(start())
    try:
        await client.call("chat.send", {"sessionKey": "main", "message": "please spawn a keeper", "idempotencyKey": "k1"})
        final = await assistant_text(MAIN, r"^Relayed: round 3", timeout=40)
        assert final == "Relayed: round 3: refined with prior context"
        deliveries = await announces()
        assert len(deliveries) == 3
        rows = await registry()
        child_key = rows[0].child_session_key
        assert [r.is_follow_up for r in rows] == [False, True, True]
        assert [r.task for r in rows] == ["research the widget market", "follow-up 2", "follow-up 3"]
        assert {r.child_session_key for r in rows} == {child_key} and {r.announce_state for r in rows} == {"announced"}
        first, second, third = (d.payload["text"] for d in deliveries)
        assert f'call sessions_send with sessionKey "{child_key}"' in first and "round 1: market is 10k units" in first
        assert "Follow-up:" not in second and "round 2: refined" in second
        assert "Follow-up:" not in third and "round 3: refined" in third
        assert all(d.idempotency_key == f"announce:v1:{child_key}:{r.run_id}" for d, r in zip(deliveries, rows))
        child = await sync_to_async(Session.objects.get)(key=child_key)
        assert child.label == "market"
        said = [(e.role, e.text) for e in await transcript(child_key)]
        assert [t for r, t in said if r == "assistant"] == [
            "round 1: market is 10k units", "round 2: refined with prior context", "round 3: refined with prior context",
        ]
        assert len({e.transcript_id for e in await transcript(child_key)}) == 1, "one transcript: full prior context"
        tools = [e.text for e in await transcript() if e.role == "tool"]
        assert sum('"followUp": true' in t for t in tools) == 2
    finally:
        await client.close()


def _fake_script(body: dict) -> Reply:
    """main: spawn, then wait; the child (its system prompt): answer; main, given the
    completion event: relay it."""
    messages = body["messages"]
    system = "\n".join(m.get("content") or "" for m in messages if m["role"] == "system")
    last = messages[-1]
    if "# Subagent Context" in system:
        return Reply(text="The fake child counted 5 gadgets.")
    if last["role"] == "tool":
        return Reply(text="Spawned; waiting.")
    if "[Internal task completion event]" in (last.get("content") or ""):
        return Reply(text="Relayed from the fake model.")
    return Reply(tool_calls=[{"id": "call_spawn", "name": "sessions_spawn",
                              "arguments": {"task": "count gadgets", "label": "gadgets"}}])  # fmt: skip


async def test_announce_reaches_an_openai_compatible_model_as_the_exact_event_text(start):
    """With a real OpenAI-compatible server: the child gets its system prompt and task; the
    parent's next model request carries the exact task_completion text as a user message."""
    with FakeOpenAI(_fake_script) as server:
        config = {"models": {"providers": {"fake": server.provider_config()}},
                  "agents": {"defaults": {"model": "fake/fake-model"}}}  # fmt: skip
        client = await connect(start(config=config))
        try:
            await client.call("chat.send", {"sessionKey": "main", "message": "count gadgets", "idempotencyKey": "o1"})
            assert await assistant_text(MAIN, r"^Relayed from the fake model\.$")
            [delivery] = await announces()
            child_request = next(b for b in server.requests if "# Subagent Context" in json.dumps(b["messages"]))
            system = next(m["content"] for m in child_request["messages"] if m["role"] == "system")
            assert "You were created to handle: count gadgets" in system and "**Resumable**" in system
            assert child_request["messages"][-1]["content"].endswith("[Subagent Task]: count gadgets")
            # Tools by depth (spec-b §1.8): the parent is offered the session tools, the leaf none.
            offered = {t["function"]["name"] for t in server.requests[0].get("tools") or []}
            assert {"sessions_spawn", "sessions_send", "subagents"} <= offered
            assert not {t["function"]["name"] for t in child_request.get("tools") or []} & offered
            parent_request = next(b for b in server.requests
                                  if "[Internal task completion event]" in (b["messages"][-1].get("content") or ""))  # fmt: skip
            assert parent_request["messages"][-1] == {"role": "user", "content": delivery.payload["text"]}
            assert "The fake child counted 5 gadgets." in delivery.payload["text"]
            assert "Stats: runtime" in delivery.payload["text"] and "tokens 18 (in 11 / out 7)" in delivery.payload["text"]
        finally:
            await client.close()


@sync_to_async
def end_run_without_hooks(run_id: str, text: str) -> None:
    """What a crash right after the engine committed a run's end leaves behind."""
    now = timezone.now()
    Run.objects.filter(run_id=run_id).update(status="ok", output={"text": text, "stopReason": "stop"},
                                             ended_at=now, lease_owner=None, lease_expires_at=None)  # fmt: skip


@sync_to_async
def sweep_due_now() -> timezone.datetime:
    """Declare the django-q2 schedules and make the maintenance sweep due at once."""
    from django_q.models import Schedule

    from cron_app.scheduler import schedules_ensure

    schedules_ensure()
    Schedule.objects.filter(name="openclaw.maintenance_sweep").update(next_run=timezone.now() - timedelta(seconds=1))
    return timezone.now()


@sync_to_async
def sweep_ran_since(moment) -> bool:
    from django_q.models import Success

    return Success.objects.filter(func="cron_app.tasks.maintenance_sweep", stopped__gt=moment).exists()


async def test_gateway_restart_between_child_end_and_announce_announces_exactly_once(start):
    """The gateway dies after the child's run ended but before its announce: the restarted
    gateway's maintenance sweep announces it, once; a further restart announces nothing."""
    gateway = start()
    client = await connect(gateway)
    child = await invoke(client, "sessions_spawn", {"task": "outlive", "label": "survivor"})
    await client.close()

    async def running():
        return (await sync_to_async(Run.objects.get)(run_id=child["runId"])).status == "running"

    assert await eventually(running)
    gateway.stop(signal.SIGKILL)
    await end_run_without_hooks(child["runId"], "survived the restart")
    assert await announces() == []
    await sweep_due_now()
    restarted = start(roles="all")  # web, engine and the django-q2 cluster that runs the sweeps
    assert await assistant_text(MAIN, r"^Relayed: survived the restart$", timeout=100), restarted.log()[-3000:]
    restarted.stop()
    moment = await sweep_due_now()
    again = start(roles="all")
    assert await eventually(lambda: sweep_ran_since(moment), timeout=100, interval=1), again.log()[-3000:]
    [delivery] = await announces()
    assert delivery.idempotency_key == f"announce:v1:{child['childSessionKey']}:{child['runId']}"
    relays = [e for e in await transcript() if e.role == "assistant" and e.text.startswith("Relayed:")]
    assert len(relays) == 1

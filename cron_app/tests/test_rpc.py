"""wake, system-event, heartbeat and cron RPC methods over a real gateway (WebSocket v4)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from cron_app.models import CronJob
from sessions_app.models import Run, SystemEvent
from tests.support.ws import GatewayCallError, GatewayClient

pytestmark = pytest.mark.live


@pytest.fixture(autouse=True)
async def close_orm_thread_connection():
    """ORM calls here run in asgiref's thread-sensitive executor; close its connection so
    the test database can be dropped (PostgreSQL refuses while a session is open)."""
    yield
    from django.db import connection

    await sync_to_async(lambda: connection.close())()


async def error_of(client, method, params):
    with pytest.raises(GatewayCallError) as caught:
        await client.call(method, params)
    return caught.value


@sync_to_async
def rows(model, **filters):
    return list(model.objects.filter(**filters))


@pytest.mark.parametrize(
    "params",
    [
        {"mode": "now", "text": "probe wake without sessionKey"},
        {"mode": "now", "text": "probe wake with sessionKey", "sessionKey": "agent:main:main"},
        {"mode": "next-heartbeat", "text": "probe wake next-heartbeat"},
        {"mode": "now", "text": "agent", "agentId": "main"},
        {"mode": "now", "text": "extra", "extra": 1},
        {"mode": "now", "text": "custom", "sessionKey": "custom-key"},
        {"mode": "now", "text": "ghost", "sessionKey": "agent:ghost:main"},
    ],
)
async def test_wake_accepts(ws_client, params):
    """The reference table's accepted calls answer ``{"ok": true}`` (the schema is open)."""
    assert await ws_client.call("wake", params) == {"ok": True}
    [event] = await rows(SystemEvent)
    assert event.text == params["text"]
    assert event.session_key in ("agent:main:main", "agent:main:custom-key")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"text": "missing mode"}, "invalid wake params: must have required property 'mode'"),
        ({"mode": "later", "text": "x"},
         "invalid wake params: at /mode: must be equal to constant; at /mode: must match a schema in anyOf"),
        ({"mode": "now", "text": ""}, "invalid wake params: at /text: must not have fewer than 1 characters"),
        ({"mode": "now", "text": "x", "sessionKey": ""},
         "invalid wake params: at /sessionKey: must not have fewer than 1 characters"),
        ({"mode": "now", "text": "x", "sessionKey": 7}, "invalid wake params: at /sessionKey: must be string"),
        ({"mode": "now", "text": "x", "sessionKey": "agent:main:subagent:abc"},
         "wake sessionKey cannot target a subagent session"),
        ({"mode": "now", "text": "x", "sessionKey": "agent:main:main", "agentId": "other"},
         "Multiple agents are configured, but session agent resolution has no explicit owner. "
         'The agent-scoped session key belongs to "main", not "other".'),
    ],
)  # fmt: skip
async def test_wake_rejects(ws_client, params, message):
    """Bad params answer INVALID_REQUEST with the reference's message, change nothing and
    keep the connection open."""
    error = await error_of(ws_client, "wake", params)
    assert (error.code, error.message) == ("INVALID_REQUEST", message)
    assert await rows(SystemEvent) == []
    assert await ws_client.call("wake", {"mode": "next-heartbeat", "text": "still open"}) == {"ok": True}


async def test_wake_needs_operator_write(live_gateway):
    async with GatewayClient(live_gateway.ws_url) as client:
        await client.connect(token=live_gateway.token, scopes=["operator.read"])
        error = await error_of(client, "wake", {"mode": "now", "text": "x"})
        assert (error.code, error.details["code"]) == ("FORBIDDEN", "MISSING_SCOPE")
        assert error.details["missingScope"] == "operator.write"
    async with GatewayClient(live_gateway.ws_url) as client:
        await client.connect(token=live_gateway.token, client={"id": "cli", "version": "1", "platform": "linux",
                                                                "mode": "cli"}, scopes=["operator.write"])  # fmt: skip
        assert await client.call("wake", {"mode": "now", "text": "cli", "sessionKey": "agent:main:main"}) == {"ok": True}
        error = await error_of(client, "system-event", {"text": "needs admin"})
        assert error.details["missingScope"] == "operator.admin"


async def test_wake_next_heartbeat_with_key_wakes_that_session(ws_client):
    """The PR #78687 exception: next-heartbeat + sessionKey is an immediate targeted run."""
    await ws_client.call("wake", {"mode": "next-heartbeat", "text": "done", "sessionKey": "agent:main:work"})
    [run] = await rows(Run, kind="heartbeat")
    assert (run.session_key, run.input["intent"]) == ("agent:main:work", "immediate")


async def test_wake_multi_agent_routes_event_and_heartbeat_to_ops(gateway_factory):
    """Multi-agent config (primary default, ops): an ops cron-run key lands in ops on both sides."""
    gateway = gateway_factory(config={"agents": {"list": [{"id": "primary", "default": True}, {"id": "ops"}]}})
    async with GatewayClient(gateway.ws_url) as client:
        await client.connect(token=gateway.token)
        key = "agent:ops:cron:nightly:run:abc-123"
        assert await client.call("wake", {"mode": "next-heartbeat", "text": "nightly", "sessionKey": key}) == {"ok": True}
        assert await client.call("wake", {"mode": "now", "text": "ghost", "sessionKey": "agent:ghost:main"}) == {"ok": True}
    events = {(e.text, e.agent_id, e.session_key) for e in await rows(SystemEvent)}
    assert events == {("nightly", "ops", key), ("ghost", "primary", "agent:primary:main")}
    runs = {(r.agent_id, r.session_key) for r in await rows(Run, kind="heartbeat")}
    assert runs == {("ops", key), ("primary", "agent:primary:main")}


async def test_system_event_and_heartbeat_switch(ws_client):
    assert await ws_client.call("system-event", {"text": "Node: laptop online", "host": "laptop"}) == {"ok": True}
    error = await error_of(ws_client, "system-event", {"text": "  "})
    assert (error.code, error.message) == ("INVALID_REQUEST", "text required")
    assert await ws_client.call("set-heartbeats", {"enabled": False}) == {"ok": True, "enabled": False}
    assert await ws_client.call("system-event", {"text": "wake me", "sessionKey": "agent:main:main", "wake": True}) == {
        "ok": True, "sessionKey": "agent:main:main",
    }  # fmt: skip
    frame = await ws_client.wait_event("heartbeat")
    assert (frame["payload"]["status"], frame["payload"]["reason"]) == ("skipped", "disabled")
    last = await ws_client.call("last-heartbeat", {})
    assert (last["status"], last["reason"]) == ("skipped", "disabled")
    assert await rows(Run, kind="heartbeat") == []
    assert await ws_client.call("set-heartbeats", {"enabled": True}) == {"ok": True, "enabled": True}
    assert [e.context_key for e in await rows(SystemEvent)] == ["presence:laptop", None]


async def test_cron_methods(ws_client):
    """add → list → status → update → run → runs → remove, with cron events and errors."""
    job = await ws_client.call("cron.add", {
        "name": "standup", "schedule": {"kind": "every", "everyMs": 3_600_000},
        "sessionTarget": "main", "wakeMode": "next-heartbeat", "payload": {"kind": "systemEvent", "text": "stand-up"},
    })  # fmt: skip
    assert job["name"] == "standup" and job["state"]["nextRunAtMs"] > 0
    added = await ws_client.wait_event("cron", lambda p: p["action"] == "added")
    assert added["payload"]["jobId"] == job["id"]
    page = await ws_client.call("cron.list", {"includeDisabled": False, "limit": 200, "offset": 0})
    assert ([j["id"] for j in page["jobs"]], page["total"], page["hasMore"]) == ([job["id"]], 1, False)
    status = await ws_client.call("cron.status", {})
    assert (status["enabled"], status["jobs"], status["nextWakeAtMs"]) == (True, 1, job["state"]["nextRunAtMs"])
    updated = await ws_client.call("cron.update", {"id": job["id"], "patch": {"name": "daily standup"}})
    assert updated["name"] == "daily standup"
    assert await ws_client.call("cron.run", {"jobId": job["id"]}) == {"ok": True, "ran": True}
    assert await ws_client.call("cron.run", {"id": job["id"], "mode": "due"}) == {"ok": True, "ran": False, "reason": "not-due"}
    finished = await ws_client.wait_event("cron", lambda p: p["action"] == "finished")
    assert (finished["payload"]["status"], finished["payload"]["summary"]) == ("ok", "stand-up")
    entries = (await ws_client.call("cron.runs", {"id": job["id"]}))["entries"]
    assert [(e["status"], e["jobName"], e["manual"]) for e in entries] == [("ok", "daily standup", True)]
    assert await ws_client.call("cron.remove", {"id": job["id"]}) == {"ok": True, "removed": True}
    assert await rows(CronJob) == []


@pytest.mark.parametrize(
    ("method", "params", "message", "detail"),
    [
        ("cron.update", {"id": "nope", "patch": {}}, "invalid cron.update params: id not found", "CRON_JOB_NOT_FOUND"),
        ("cron.remove", {"id": "nope"}, "invalid cron.remove params: id not found", "CRON_JOB_NOT_FOUND"),
        ("cron.run", {"id": "nope"}, "invalid cron.run params: id not found", "CRON_JOB_NOT_FOUND"),
        ("cron.add", {"schedule": {}, "payload": {}}, "invalid cron.add params: must have required property 'name'", None),
        ("cron.add", {"name": "x", "schedule": {"kind": "every", "everyMs": 1000}, "sessionTarget": "main",
                      "payload": {"kind": "agentTurn", "message": "m"}},
         'invalid cron.add params: sessionTarget "main" requires payload.kind "systemEvent"', "INVALID_CRON_JOB"),
        ("cron.list", {"limit": 0}, "invalid cron.list params: at /limit: must be >= 1", None),
        ("cron.remove", {}, "invalid cron.remove params: must have required property 'id'", None),
    ],
)  # fmt: skip
async def test_cron_method_errors(ws_client, method, params, message, detail):
    error = await error_of(ws_client, method, params)
    assert (error.code, error.message) == ("INVALID_REQUEST", message)
    assert error.details.get("code") == detail


async def test_hello_lists_the_methods(ws_client):
    methods = set(ws_client.hello["features"]["methods"])
    assert {"wake", "system-event", "last-heartbeat", "set-heartbeats", "cron.list", "cron.status", "cron.add",
            "cron.update", "cron.remove", "cron.run", "cron.runs"} <= methods  # fmt: skip

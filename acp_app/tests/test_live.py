"""Hub-delegated workers over a live gateway (``manage.py gateway`` web + engine): the hub's
model spawns a worker and follows up by label through its tools, ``/acp delegate`` in the
hub's chat, ``acp.delegate.*`` over the WebSocket, and the harness process stopped on close."""

from __future__ import annotations

import json
import os

import pytest
from asgiref.sync import sync_to_async

from acp_app.models import AcpSession
from tests.support.ws import GatewayClient

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

RULES = [
    {"match": "delegate it", "toolCalls": [{"id": "call_spawn", "name": "sessions_spawn", "arguments": {
        "runtime": "acp", "delegate": True, "agentId": "offline", "label": "w1", "task": "build the thing"}}]},
    {"match": "ask the worker", "toolCalls": [{"id": "call_send", "name": "sessions_send", "arguments": {
        "label": "w1", "message": "how is it going", "timeoutSeconds": 60}}]},
    {"on": "tool", "reply": "tool said: {toolResults}"},
]  # fmt: skip


@pytest.fixture
def gateway(gateway_factory, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": RULES}))
    env = {"OPENCLAW_OFFLINE_RULES": str(rules), "OPENCLAW_ENGINE_POLL_S": "0.2",
           "OFFLINE_ACP_STATE_DIR": str(tmp_path / "offline-acp")}  # fmt: skip
    return gateway_factory(args=("--role", "web,engine"), env=env)


def final_of(run_id):
    return lambda p: p.get("runId") == run_id and p.get("state") in ("final", "aborted", "error")


async def turn(client: GatewayClient, message: str, run_id: str, timeout: float = 60) -> str:
    await client.call("chat.send", {"sessionKey": "main", "message": message, "idempotencyKey": run_id})
    final = await client.wait_event("chat", final_of(run_id), timeout=timeout)
    assert final["payload"]["state"] == "final", final
    return final["payload"]["message"]["content"][0]["text"]


@sync_to_async
def worker_row() -> AcpSession:
    return AcpSession.objects.select_related("session").get()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return fh.read().rsplit(b")", 1)[-1].split()[0] not in (b"Z", b"X")


async def test_hub_spawns_follows_up_lists_and_closes_a_worker(gateway):
    client = GatewayClient(gateway.ws_url)
    await client.connect(token=gateway.token)
    try:
        spawned = await turn(client, "please delegate it", "hub-1")
        assert '"status": "accepted"' in spawned and '"label": "w1"' in spawned
        await client.call("chat.send", {"sessionKey": "main", "message": "/acp delegate list", "idempotencyKey": "cmd-1"})
        listing = (await client.wait_event("chat", final_of("cmd-1")))["payload"]["message"]["content"][0]["text"]
        assert "- w1 (offline, " in listing
        reply = await turn(client, "ask the worker", "hub-2")
        assert "echo #2: how is it going (remembered: build the thing)" in reply and '"status": "skipped"' in reply
        row = await worker_row()
        assert row.owner_session_key == "agent:main:main" and pid_alive(row.process_pid)
        listed = await client.call("acp.delegate.list", {"sessionKey": "main"})
        assert [d["label"] for d in listed["delegates"]] == ["w1"]
        closed = await client.call("acp.delegate.close", {"sessionKey": "main", "label": "w1"})
        assert closed["runtimeNotice"] == "runtime closed"
        assert not pid_alive(row.process_pid)
        again = await turn(client, "ask the worker", "hub-3")
        assert "No session found with label: w1" in again
        assert (await client.call("acp.delegate.list", {"sessionKey": "main"}))["delegates"] == []
    finally:
        await client.close()

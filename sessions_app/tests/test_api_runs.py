"""REST doors onto runs: start (chat.send), wait (agent.wait), read, abort, and the
server-sent event stream. In-process with APIClient where no engine is needed; against a
live gateway (daphne + engine) for waiting and streaming under ASGI. The RPC methods run
their ORM work through ``database_sync_to_async``, which closes a connection left in a
test transaction: the in-process tests use real transactions."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from rest_framework.test import APIClient

from sessions_app.models import Run, SessionEvent

TOKEN = "rest-test-token"
MAIN = "agent:main:main"


@pytest.fixture
def token_config(gateway_config, settings, tmp_path):
    settings.OPENCLAW_STATE_DIR = tmp_path
    gateway_config({"gateway": {"auth": {"mode": "token", "token": TOKEN}}})


@pytest.fixture
def api(token_config) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    return client


def start(api: APIClient, message: str, key: str = "r1", session: str = "main"):
    return api.post(f"/api/v1/sessions/{session}/messages", {"message": message, "idempotencyKey": key}, format="json")


def stream_body(response) -> str:
    """The whole body of an (async) streaming response."""

    async def collect() -> bytes:
        return b"".join([chunk async for chunk in response.streaming_content])

    return async_to_sync(collect)().decode()


def sse_blocks(body: str) -> list[dict]:
    """``[{id?, event, data}]`` of a text/event-stream body (comments skipped)."""
    blocks = []
    for chunk in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in chunk.splitlines() if not line.startswith(":"))
        if fields:
            blocks.append({**fields, "data": json.loads(fields["data"])})
    return blocks


# --- in-process ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_start_queues_a_run_and_a_replay_answers_from_it(api):
    """202 started, the run is queued on the canonical session; the same key again → 200 in_flight."""
    first = start(api, "hello")
    assert first.status_code == 202 and first.json() == {"runId": "r1", "status": "started"}
    run = Run.objects.get(run_id="r1")
    assert (run.session_key, run.status, run.input["message"]) == (MAIN, "queued", "hello")
    replay = start(api, "hello")
    assert replay.status_code == 200 and replay.json() == {"runId": "r1", "status": "in_flight"}
    assert Run.objects.filter(run_id="r1").count() == 1


@pytest.mark.django_db(transaction=True)
def test_start_validates_like_chat_send(api):
    missing = api.post("/api/v1/sessions/main/messages", {"message": "x"}, format="json")
    assert missing.status_code == 400
    assert missing.json()["error"]["message"].startswith("invalid chat.send params")
    bad_key = start(api, "x", session="agent::x")
    assert bad_key.status_code == 400 and "malformed session key" in bad_key.json()["error"]["message"]


@pytest.mark.django_db(transaction=True)
def test_get_run_and_unknown_run(api):
    start(api, "hello")
    row = api.get("/api/v1/runs/r1").json()
    assert row["runId"] == "r1" and row["status"] == "queued" and row["sessionKey"] == MAIN and row["message"] == "hello"
    for path in ("/api/v1/runs/nope", "/api/v1/runs/nope/wait", "/api/v1/runs/nope/events"):
        response = api.get(path)
        assert response.status_code == 404 and response.json()["error"]["details"]["code"] == "RUN_NOT_FOUND", path


@pytest.mark.django_db(transaction=True)
def test_abort_a_queued_run_then_refuse_the_ended_one(api):
    start(api, "hello")
    aborted = api.post("/api/v1/runs/r1/abort")
    assert aborted.status_code == 200 and aborted.json()["status"] == "aborted" and aborted.json()["ok"] is True
    event = SessionEvent.objects.get(event="chat", payload__runId="r1")
    assert event.payload["state"] == "aborted"
    again = api.post("/api/v1/runs/r1/abort")
    assert again.status_code == 400 and again.json()["error"]["details"]["code"] == "RUN_NOT_ACTIVE"


@pytest.mark.django_db(transaction=True)
def test_wait_with_zero_timeout_answers_timeout_and_leaves_the_run(api):
    start(api, "hello")
    assert api.get("/api/v1/runs/r1/wait?timeoutMs=0").json() == {"runId": "r1", "status": "timeout"}
    assert Run.objects.get(run_id="r1").status == "queued"
    assert api.get("/api/v1/runs/r1/wait?timeoutMs=soon").status_code == 400


@pytest.mark.django_db(transaction=True)
def test_events_of_an_ended_run_are_replayed_then_end(api):
    """The stored events of the run, in sessionSeq order, after afterSeq, then ``end``."""
    start(api, "hello")
    api.post("/api/v1/runs/r1/abort")
    response = api.get("/api/v1/runs/r1/events")
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    blocks = sse_blocks(stream_body(response))
    assert [b["event"] for b in blocks] == ["chat", "end"]
    assert blocks[0]["data"]["state"] == "aborted" and blocks[0]["id"] == str(blocks[0]["data"]["sessionSeq"])
    assert blocks[1]["data"] == {"runId": "r1", "status": "aborted"}
    after = api.get(f"/api/v1/runs/r1/events?afterSeq={blocks[0]['id']}")
    assert [b["event"] for b in sse_blocks(stream_body(after))] == ["end"]


# --- live gateway (ASGI) -----------------------------------------------------------------------


@pytest.fixture
def gateway(gateway_factory, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": [{"match": "slow", "reply": "slow reply", "delayMs": 1500}]}))
    return gateway_factory(args=("--role", "web,engine"), env={"OPENCLAW_OFFLINE_RULES": str(rules),
                                                               "OPENCLAW_ENGINE_POLL_S": "0.2"})  # fmt: skip


def live_client(gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gateway.http_url, headers={"Authorization": f"Bearer {gateway.token}"}, timeout=30)


async def test_live_start_wait_and_stream_a_turn(gateway):
    """Start over REST, follow the events as they stream (deltas, final, lifecycle end),
    and wait: all under daphne, while the turn runs."""
    async with live_client(gateway) as http:
        started = await http.post("/api/v1/sessions/main/messages", json={"message": "slow please", "idempotencyKey": "l1"})
        assert started.status_code == 202
        waiter = asyncio.create_task(http.get("/api/v1/runs/l1/wait", params={"timeoutMs": 10000}))
        blocks = []
        async with http.stream("GET", "/api/v1/runs/l1/events") as stream:
            assert stream.headers["content-type"] == "text/event-stream"
            body = ""
            async for chunk in stream.aiter_text():
                body += chunk
        blocks = sse_blocks(body)
        waited = (await waiter).json()
    kinds = [(b["event"], b["data"].get("state") or (b["data"].get("data") or {}).get("phase")) for b in blocks]
    assert kinds[0] == ("agent", "start") and kinds[-1] == ("end", None)
    assert ("chat", "final") in kinds and ("agent", "end") in kinds
    assert kinds.index(("chat", "final")) < kinds.index(("agent", "end"))
    seqs = [int(b["id"]) for b in blocks if "id" in b]
    assert seqs == sorted(set(seqs))
    final = next(b for b in blocks if b["data"].get("state") == "final")
    assert final["data"]["message"]["content"][0]["text"] == "slow reply"
    assert blocks[-1]["data"] == {"runId": "l1", "status": "ok"}
    assert waited["status"] == "ok" and waited["startedAt"] <= waited["endedAt"]
    run = await sync_to_async(Run.objects.get)(run_id="l1")
    assert run.status == "ok"


async def test_live_wait_timeout_then_abort_over_rest(gateway):
    async with live_client(gateway) as http:
        await http.post("/api/v1/sessions/main/messages", json={"message": "slow one", "idempotencyKey": "l2"})
        for _ in range(100):
            if (await http.get("/api/v1/runs/l2")).json()["status"] == "running":
                break
            await asyncio.sleep(0.05)
        short = await http.get("/api/v1/runs/l2/wait", params={"timeoutMs": 100})
        assert short.json() == {"runId": "l2", "status": "timeout"}
        aborted = await http.post("/api/v1/runs/l2/abort")
        assert aborted.status_code == 200 and aborted.json()["abortRequested"] is True
        waited = (await http.get("/api/v1/runs/l2/wait", params={"timeoutMs": 10000})).json()
        assert waited["status"] == "timeout" and waited["endedAt"]  # aborted reads timeout, as agent.wait
        assert (await http.get("/api/v1/runs/l2")).json()["status"] == "aborted"

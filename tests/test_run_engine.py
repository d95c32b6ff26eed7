"""End-to-end tests of the run engine: real gateway processes, real WebSocket clients,
the offline model for fast flows and a real local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from asgiref.sync import sync_to_async

from sessions_app.models import Run, SessionEvent, SystemEvent, TranscriptEntry
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.ws import GatewayCallError, GatewayClient

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

MAIN = "agent:main:main"
RULES = [
    {"match": "slow", "reply": "slow reply to: {user}", "delayMs": 1500},
    {"match": "parallel", "toolCalls": [
        {"id": "call_slow", "name": "test_sleep", "arguments": {"ms": 1500, "text": "slow-result"}},
        {"id": "call_fast", "name": "test_sleep", "arguments": {"ms": 50, "text": "fast-result"}},
    ]},
    {"match": "nap", "toolCalls": [{"id": "call_nap", "name": "test_sleep", "arguments": {"ms": 800, "text": "napped"}}]},
    {"on": "tool", "reply": "after tools, I saw: {input}"},
]  # fmt: skip


@pytest.fixture
def rules_file(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"rules": RULES}))
    return path


@pytest.fixture
def start(gateway_factory, rules_file):
    """Start a gateway (web + engine, no django-q2) with the test rules and test tools."""

    def run(config=None, env=None, roles="web,engine"):
        full_env = {"OPENCLAW_TEST_TOOLS": "1", "OPENCLAW_OFFLINE_RULES": str(rules_file),
                    "OPENCLAW_ENGINE_POLL_S": "0.2", **(env or {})}  # fmt: skip
        return gateway_factory(config=config, args=("--role", roles), env=full_env)

    return run


async def connect(gateway) -> GatewayClient:
    client = GatewayClient(gateway.ws_url)
    await client.connect(token=gateway.token)
    return client


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

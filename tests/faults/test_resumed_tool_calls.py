"""A run taken over between its tool calls and their results (its engine died) runs the
unanswered calls before asking the model again, so no ``sessions_send`` is lost; a call
that already has its result is not run again (DESIGN §8 rule 1). In process: the real
engine on the test's loop, the offline model."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from sessions_app.engine import Engine
from sessions_app.models import Delivery, Run, TranscriptEntry
from sessions_app.services.sessions import session_ensure, transcript_append

pytestmark = pytest.mark.django_db(transaction=True)
KEY = "agent:main:main"


def send_call(call_id: str, n: int) -> dict:
    return {"type": "toolCall", "id": call_id, "name": "sessions_send",
            "arguments": {"sessionKey": f"agent:main:sink-{n}", "message": f"hello {n}", "timeoutSeconds": 0}}  # fmt: skip


@sync_to_async
def orphaned_run() -> Run:
    """A running run of a dead engine: its step recorded two calls, only the first answered."""
    session, _ = session_ensure(key=KEY)
    run = Run.objects.create(run_id="orphan", session=session, session_key=KEY, agent_id="main", status="running",
                             attempts=1, lease_owner="dead-engine", input={"message": "go"},
                             lease_expires_at=timezone.now() - timezone.timedelta(seconds=5))  # fmt: skip
    session.active_run_id, session.state = "orphan", "busy"
    session.save(update_fields=["active_run_id", "state"])
    transcript_append(session=session, role="user", content="go", run_id="orphan", idempotency_key="orphan:input")
    transcript_append(session=session, role="assistant", content=[send_call("c1", 1), send_call("c2", 2)], run_id="orphan")
    transcript_append(session=session, role="tool", run_id="orphan", content=[
        {"type": "toolResult", "toolCallId": "c1", "toolName": "sessions_send", "isError": False, "text": "{}"}])  # fmt: skip
    return run


async def test_a_taken_over_run_runs_its_unanswered_tool_calls_once(gateway_config, settings, monkeypatch, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": [{"on": "tool", "reply": "sent"}]}))
    monkeypatch.setenv("OPENCLAW_OFFLINE_RULES", str(rules))
    settings.OPENCLAW_ENGINE_POLL_S = 0.1
    await sync_to_async(gateway_config)({"tools": {"sessions": {"visibility": "agent"}},
                                         "session": {"agentToAgent": {"maxPingPongTurns": 0}}})  # fmt: skip
    await orphaned_run()
    engine = Engine(owner="survivor")
    task = asyncio.create_task(engine.run())
    try:
        for _ in range(200):
            run = await Run.objects.aget(run_id="orphan")
            if run.is_terminal:
                break
            await asyncio.sleep(0.05)
    finally:
        await engine.stop()
        task.cancel()
    assert (run.status, run.attempts, run.lease_owner) == ("ok", 2, "survivor")
    deliveries = await sync_to_async(lambda: list(Delivery.objects.filter(source_run_id="orphan")))()
    assert [(d.target_session_key, d.idempotency_key) for d in deliveries] == [("agent:main:sink-2", "send:v1:orphan:c2")]
    results = await sync_to_async(lambda: [b["toolCallId"] for e in TranscriptEntry.objects.filter(run_id="orphan", role="tool")
                                           for b in e.content])()  # fmt: skip
    assert results == ["c1", "c2"]
    assert run.output["text"] == "sent"

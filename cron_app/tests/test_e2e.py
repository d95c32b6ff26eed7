"""End to end through ``manage.py gateway``: the run engine executes heartbeat and cron
turns with the offline model, and the django-q2 cluster (a real ``qcluster`` process)
fires the declared schedules."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from cron_app.models import CronRun, HeartbeatState
from sessions_app.models import Run, Session, SystemEvent, TranscriptEntry
from tests.support.ws import GatewayClient

ENGINE = (Path(__file__).resolve().parents[2] / "sessions_app" / "engine" / "__init__.py").exists()
pytestmark = [pytest.mark.live, pytest.mark.skipif(not ENGINE, reason="needs the run engine (sessions_app/engine)")]

@pytest.fixture(autouse=True)
async def close_orm_thread_connection():
    """ORM calls here run in asgiref's thread-sensitive executor; close its connection so
    the test database can be dropped (PostgreSQL refuses while a session is open)."""
    yield
    from django.db import connection

    await sync_to_async(lambda: connection.close())()


RULES = [
    {"match": "remember the milk", "reply": "Noted: {system}"},
    {"match": "all quiet", "reply": "HEARTBEAT_OK"},
    {"match": "Read HEARTBEAT.md", "reply": "HEARTBEAT_OK"},
    {"match": "summarise the logs", "reply": "All 3 services healthy."},
]


@pytest.fixture
def rules_gateway(gateway_factory, tmp_path):
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": RULES}))

    def start(config=None, **kwargs):
        return gateway_factory(config=config or {}, env={"OPENCLAW_OFFLINE_RULES": str(rules)}, **kwargs)

    return start


async def until(predicate, *, timeout=30.0, interval=0.2):
    """Poll a sync predicate (in a DB thread) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await sync_to_async(predicate)()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


async def test_wake_now_runs_a_heartbeat_and_acks_silently(rules_gateway):
    """wake(now) → a heartbeat turn sees the System: line; HEARTBEAT_OK → ``ok-token``."""
    gateway = rules_gateway()
    async with GatewayClient(gateway.ws_url) as client:
        await client.connect(token=gateway.token)
        await client.call("wake", {"mode": "now", "text": "all quiet on db-1", "sessionKey": "agent:main:main"})
        frame = await client.wait_event("heartbeat", lambda p: p.get("status") != "skipped", timeout=30)
        assert (frame["payload"]["status"], frame["payload"]["silent"]) == ("ok-token", True)
        assert (await client.call("last-heartbeat", {}))["status"] == "ok-token"
    run = await sync_to_async(Run.objects.get)(kind="heartbeat")
    event = await sync_to_async(SystemEvent.objects.get)()
    assert (run.status, event.consumed_by_run_id) == ("ok", run.run_id)
    entries = await sync_to_async(lambda: {e.role: e.provenance for e in TranscriptEntry.objects.filter(run_id=run.run_id)})()
    assert entries["user"]["kind"] == "heartbeat" and entries["user"]["heartbeat"]["suppressed"] is True
    assert entries["assistant"]["heartbeat"] == {"status": "ok-token", "suppressed": True}
    assert "heartbeat" not in entries["system"]  # the drained System: line stays visible


async def test_system_event_survives_a_gateway_restart_and_reaches_the_next_turn(rules_gateway):
    """Queued on one gateway process, consumed by a turn on the next one."""
    first = rules_gateway()
    async with GatewayClient(first.ws_url) as client:
        await client.connect(token=first.token)
        assert await client.call("wake", {"mode": "next-heartbeat", "text": "remember the milk"}) == {"ok": True}
    first.stop()
    assert await sync_to_async(SystemEvent.objects.pending().count)() == 1
    second = rules_gateway()
    async with GatewayClient(second.ws_url) as client:
        await client.connect(token=second.token)
        started = await client.call("chat.send", {"sessionKey": "agent:main:main", "message": "hello",
                                                  "idempotencyKey": "turn-after-restart"})  # fmt: skip
        run_id = started["runId"]
        run = await until(lambda: Run.objects.filter(run_id=run_id, status="ok").first())
    assert "remember the milk" in run.output["text"]
    event = await sync_to_async(SystemEvent.objects.get)()
    assert event.consumed_by_run_id == run_id


async def test_isolated_cron_job_runs_through_the_engine_and_announces(rules_gateway):
    """cron.run on an isolated job: the engine runs the turn in its cron run session, the
    run is logged ok and the summary is announced to the main session."""
    gateway = rules_gateway()
    async with GatewayClient(gateway.ws_url) as client:
        await client.connect(token=gateway.token)
        job = await client.call("cron.add", {
            "name": "nightly", "schedule": {"kind": "every", "everyMs": 3_600_000}, "sessionTarget": "isolated",
            "payload": {"kind": "agentTurn", "message": "summarise the logs"},
        })  # fmt: skip
        assert await client.call("cron.run", {"id": job["id"]}) == {"ok": True, "ran": True}
        finished = await client.wait_event("cron", lambda p: p["action"] == "finished", timeout=30)
        assert (finished["payload"]["status"], finished["payload"]["summary"]) == ("ok", "All 3 services healthy.")
        entries = (await client.call("cron.runs", {"id": job["id"]}))["entries"]
    assert entries[0]["sessionKey"].startswith(f"agent:main:cron:{job['id']}:run:")
    assert entries[0]["deliveryStatus"] == "delivered"
    announced = await until(lambda: SystemEvent.objects.filter(text="Cron: All 3 services healthy.").first())
    assert announced.session_key == "agent:main:main"


async def test_django_q_cluster_fires_the_heartbeat_on_schedule(rules_gateway, gateway_config):
    """The gateway's real django-q2 cluster (not sync mode) runs the declared heartbeat
    tick; the agent's heartbeat is due, so a scheduled heartbeat turn runs."""
    from cron_app.scheduler import schedules_ensure
    from cron_app.services.heartbeats import heartbeat_state_sync

    config = {"agents": {"defaults": {"heartbeat": {"every": "1h"}}}}
    gateway_config(config)

    @sync_to_async
    def make_due():
        from django.db import transaction

        from openclaw_site.config import get_config

        schedules_ensure()
        cfg = get_config()
        with transaction.atomic():
            heartbeat_state_sync(cfg=cfg, agent_id="main", hb=cfg.agent("main").heartbeat, now=timezone.now())
        HeartbeatState.objects.filter(agent_id="main").update(next_due_at=timezone.now() - timedelta(seconds=1))

    await make_due()
    rules_gateway(config)  # role all: web + engine + qcluster
    run = await until(lambda: Run.objects.filter(kind="heartbeat", status="ok").first(), timeout=100, interval=1)
    assert (run.input["intent"], run.input["source"], run.session_key) == ("scheduled", "interval", "agent:main:main")
    state = await sync_to_async(HeartbeatState.objects.get)(agent_id="main")
    assert state.next_due_at > timezone.now() and state.last_status == "ok-token"


async def test_cron_main_job_fires_from_the_cluster(rules_gateway):
    """A due main job is fired by the cluster's cron tick: one run for its slot."""
    from cron_app.scheduler import schedules_ensure
    from cron_app.services import cron_job_add

    @sync_to_async
    def add_due_job():
        schedules_ensure()
        anchor = int(timezone.now().timestamp() * 1000) - 3_600_000 + 2_000  # first slot in 2 s
        schedule = {"kind": "every", "everyMs": 3_600_000, "anchorMs": anchor}
        return cron_job_add(data={"name": "due", "schedule": schedule,
                                  "payload": {"kind": "systemEvent", "text": "all quiet here"}})  # fmt: skip

    job = await add_due_job()
    rules_gateway()
    run = await until(lambda: CronRun.objects.filter(job_uid=job.job_id).exclude(status="running").first(),
                      timeout=100, interval=1)  # fmt: skip
    assert run.status == "ok"
    await asyncio.sleep(1)
    assert await sync_to_async(CronRun.objects.filter(job_uid=job.job_id).count)() == 1
    session = await sync_to_async(Session.objects.get)(key="agent:main:main")
    assert session.agent_id == "main"

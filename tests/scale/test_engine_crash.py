"""SIGKILL an engine with 50 runs in flight (DESIGN §8 rules 1 and 6).

Two engines share 50 turns: 40 that message a sink session with ``sessions_send``
(a delivery each) and 10 that spawn a sub-agent (an announce each). Once both engines
are busy, one is killed with SIGKILL. The survivor takes over the dead engine's runs
when their leases expire; every run ends ``ok``, the taken-over ones after exactly one
more attempt; every delivery reaches its sink once, every child is spawned once and
announced once, and no session gets a reply twice.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import pytest
from asgiref.sync import sync_to_async

from sessions_app.models import Delivery, Run, SubagentRun, TranscriptEntry
from tests.support.ws import GatewayClient

from .conftest import needs_postgres_and_redis
from .test_scale_out import owner_pid

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), needs_postgres_and_redis]
JOBS, SPAWNS = 40, 10


@sync_to_async
def running_by_owner() -> Counter:
    return Counter(owner_pid(o) for o in Run.objects.filter(status="running").values_list("lease_owner", flat=True))


@sync_to_async
def settled() -> bool:
    """No run left to do, every announce decided, no delivery pending."""
    if Run.objects.exclude(status__in=Run.TERMINAL).exists():
        return False
    if SubagentRun.objects.count() < SPAWNS or SubagentRun.objects.filter(announce_state="pending").exists():
        return False
    return not Delivery.objects.filter(state="pending").exists()


async def wait_for(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what} not reached within {timeout}s")


def progress() -> dict:
    return {"runs": Counter(Run.objects.values_list("kind", "status")),
            "announces": Counter(SubagentRun.objects.values_list("announce_state", flat=True)),
            "deliveries": Counter(Delivery.objects.values_list("kind", "state"))}


def user_texts(key: str) -> list[str]:
    return [e.text for e in TranscriptEntry.objects.filter(session__key=key, role="user", archived=False)]


def assistant_texts(key: str) -> list[str]:
    return [e.text for e in TranscriptEntry.objects.filter(session__key=key, role="assistant", archived=False)]


@pytest.mark.timeout(240)
async def test_sigkill_an_engine_with_50_runs_in_flight(cluster):
    c = cluster(env={"OPENCLAW_ENGINE_LEASE_S": "5", "OPENCLAW_ENGINE_MAX_CONCURRENCY": "25"},
                config={"tools": {"sessions": {"visibility": "agent"}},
                        "session": {"agentToAgent": {"maxPingPongTurns": 0}}})
    web, engine1, engine2, _worker = c.start_many("web", "engine", "engine", "worker")
    client = GatewayClient(web.ws_url)
    await client.connect(token=web.token)
    try:
        for n in range(JOBS):
            await client.call("chat.send", {"sessionKey": f"agent:main:crash-{n}", "message": f"job {n}",
                                            "idempotencyKey": f"job-{n}"})  # fmt: skip
        for n in range(SPAWNS):
            await client.call("chat.send", {"sessionKey": f"agent:main:parent-{n}", "message": f"spawn {n}",
                                            "idempotencyKey": f"spawn-{n}"})  # fmt: skip
    finally:
        await client.close()
    busy = await wait_for(
        lambda: _both_busy(engine1.pid, engine2.pid), timeout=30, what="both engines running turns"
    )  # fmt: skip
    killed_at = time.monotonic()
    engine1.send_signal(signal.SIGKILL)
    engine1.process.wait(timeout=5)
    orphaned = await sync_to_async(lambda: set(Run.objects.filter(status="running").exclude(
        lease_owner__contains=f":{engine2.pid}:").values_list("run_id", flat=True)))()  # fmt: skip
    try:
        await wait_for(settled, timeout=120, what="every run, delivery and announce settled")
    finally:
        print("\n", await sync_to_async(progress)())
    recovered_in = time.monotonic() - killed_at
    print(await sync_to_async(diagnose)(orphaned))
    await sync_to_async(check_outcome)(orphaned=orphaned, survivor=engine2.pid)
    print(f"\nengine crash: {sum(busy.values())} running at the kill ({dict(busy)}), {len(orphaned)} orphaned, "
          f"all settled {recovered_in:.1f}s after the kill")  # fmt: skip


async def _both_busy(pid1: int, pid2: int):
    running = await running_by_owner()
    return running if running[pid1] >= 10 and running[pid2] >= 10 else None


def diagnose(orphaned) -> str:
    lines = []
    for n in range(JOBS):
        if not Delivery.objects.filter(target_session_key=f"agent:main:sink-{n}", kind="send").exists():
            run = Run.objects.get(run_id=f"job-{n}")
            rows = TranscriptEntry.objects.filter(session__key=f"agent:main:crash-{n}").order_by("seq")
            lines.append(f"job-{n} attempts={run.attempts} orphaned={run.run_id in orphaned}: "
                         + " | ".join(f"{e.role}:{e.text[:40]!r}:{str(e.content)[:120]}" for e in rows))
    return "\n".join(lines)


def check_outcome(*, orphaned: set[str], survivor: int) -> None:
    runs = list(Run.objects.all())
    failed = [(r.run_id, r.kind, r.attempts, r.error, r.run_id in orphaned) for r in runs if r.status != "ok"]
    assert not failed, failed
    for run in runs:
        if run.run_id in orphaned:
            assert run.attempts == 2 and owner_pid(run.lease_owner) == survivor, (run.run_id, run.attempts, run.lease_owner)
        else:
            assert run.attempts == 1, (run.run_id, run.kind, run.attempts)
    for n in range(JOBS):
        deliveries = list(Delivery.objects.filter(target_session_key=f"agent:main:sink-{n}", kind="send"))
        assert len(deliveries) == 1 and deliveries[0].state in ("delivered", "consumed"), deliveries
        assert user_texts(f"agent:main:sink-{n}").count(f"from job {n}") == 1
        assert assistant_texts(f"agent:main:crash-{n}").count("step done") == 1
    for n in range(SPAWNS):
        children = list(SubagentRun.objects.filter(requester_session_key=f"agent:main:parent-{n}"))
        assert len(children) == 1 and children[0].announce_state == "announced", children
        announces = Delivery.objects.filter(kind="announce", target_session_key=f"agent:main:parent-{n}")
        assert announces.count() == 1
        mentions = [t for t in user_texts(f"agent:main:parent-{n}") if f"child result {n}" in t]
        assert len(mentions) == 1, mentions

"""Two worker processes (each a django-q2 cluster on the Redis broker plus the scheduler
ticker): heartbeat and cron slots fire once across them (DESIGN §7)."""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async

from django.utils import timezone

from cron_app.models import CronRun
from cron_app.services import cron_job_add
from cron_app.services.runner import TIMED_OUT, TIMEOUT_GRACE, cron_timeouts_sweep, job_timeout_s
from sessions_app.models import Run
from tests.support.cluster import wait_until

from .conftest import needs_postgres_and_redis

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), needs_postgres_and_redis]
WINDOW_S = 12


@pytest.mark.timeout(180)
async def test_heartbeat_and_cron_slots_fire_once_across_two_worker_clusters(cluster):
    # main beats every 2 s; the cron job belongs to ops.
    c = cluster(config={"agents": {"defaults": {"heartbeat": {"every": "0m"}}, "list": [
        {"id": "main", "default": True, "heartbeat": {"every": "2s", "target": "none"}}, {"id": "ops"}]}})
    c.start_many("engine", "worker", "worker")
    job = await sync_to_async(cron_job_add)(data={
        "name": "every two seconds", "agentId": "ops", "schedule": {"kind": "every", "everyMs": 2000},
        "sessionTarget": "isolated", "payload": {"kind": "agentTurn", "message": "slow 1"},
    })  # fmt: skip
    started = time.monotonic()
    time.sleep(WINDOW_S)
    workers = c.processes[1:]
    for process in workers:
        process.send_signal(signal.SIGTERM)
    for process in workers:
        process.stop()
    elapsed = time.monotonic() - started
    runs = await sync_to_async(lambda: list(CronRun.objects.filter(job_uid=job.job_id, manual=False)))()
    slots = Counter(run.scheduled_for for run in runs)
    assert slots and max(slots.values()) == 1, slots
    assert 3 <= len(runs) <= elapsed / 2 + 1, len(runs)
    beats = await sync_to_async(lambda: [(r.created_at, r.input.get("source")) for r in
                                         Run.objects.filter(kind="heartbeat", agent_id="main").order_by("created_at")])()
    interval = [at for at, source in beats if source == "interval"]  # (cron wakes add beats of their own)
    gaps = [(b - a).total_seconds() for a, b in zip(interval, interval[1:])]
    assert 2 <= len(interval) <= elapsed / 2 + 1, beats
    assert all(gap >= 0.9 for gap in gaps), (gaps, beats)  # due every 2 s, ticks every 1 s: never the same slot twice
    print(f"\nworkers: {len(runs)} cron slots and {len(interval)} interval heartbeats in {elapsed:.1f}s across two clusters, "
          f"none twice")  # fmt: skip


@pytest.mark.timeout(180)
async def test_a_worker_killed_during_cron_slots_leaves_the_other_firing_each_slot_once(cluster):
    """SIGKILL one worker (its gateway process, ticker and django-q2 cluster) while a job
    fires every second: the other worker goes on firing, no slot twice, and every fired
    slot ends (one the killed worker had claimed but not started is ended by the cron
    timeouts sweep)."""
    c = cluster()
    _engine, doomed, survivor = c.start_many("engine", "worker", "worker")
    job = await sync_to_async(cron_job_add)(data={
        "name": "every second", "schedule": {"kind": "every", "everyMs": 1000},
        "sessionTarget": "isolated", "payload": {"kind": "agentTurn", "message": "slow 2"},
    })  # fmt: skip
    time.sleep(4)
    qcluster = doomed.descendants()
    doomed.kill_tree()
    killed_at, killed_wall = time.monotonic(), timezone.now()
    assert qcluster
    wait_until(lambda: not any(_alive(pid) for pid in qcluster), timeout=10, what="the killed cluster gone")
    fired = lambda: list(CronRun.objects.filter(job_uid=job.job_id, manual=False))  # noqa: E731
    before = len(await sync_to_async(fired)())
    time.sleep(5)
    survivor.send_signal(signal.SIGTERM)
    survivor.stop()
    stuck = await sync_to_async(running_after)(job.job_id, timeout_s=30)
    # A slot the killed worker had claimed but not yet started stays "running" until the
    # cron timeouts sweep (job timeout + 30 s grace) ends it as an error: bounded and
    # visible, never silently lost. Only such slots may be left; the sweep ends them.
    assert all(run.started_at <= killed_wall for run in stuck), stuck
    if stuck:
        later = timezone.now() + timedelta(seconds=job_timeout_s(stuck[0].job)) + TIMEOUT_GRACE + timedelta(seconds=1)
        await sync_to_async(cron_timeouts_sweep)(now=later)
        assert await sync_to_async(lambda: set(CronRun.objects.filter(pk__in=[r.pk for r in stuck])
                                               .values_list("status", "error")))() == {("error", TIMED_OUT)}  # fmt: skip
    runs = await sync_to_async(fired)()
    slots = Counter(run.scheduled_for for run in runs)
    assert max(slots.values()) == 1, slots
    assert len(runs) - before >= 2, (before, len(runs))  # the survivor kept firing after the kill
    print(f"\nworker killed: {before} slots before, {len(runs) - before} after "
          f"({time.monotonic() - killed_at:.1f}s), none twice, {len(stuck)} claimed-but-unstarted ended by the sweep")  # fmt: skip


def running_after(job_uid: str, *, timeout_s: float) -> list[CronRun]:
    """The job's runs still ``running`` after ``timeout_s`` (time enough for their turns)."""
    deadline = time.monotonic() + timeout_s
    while True:
        running = list(CronRun.objects.filter(job_uid=job_uid, status="running").select_related("job"))
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.5)


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"

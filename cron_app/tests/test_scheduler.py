"""Declared django-q2 schedules, the in-process ticker and the maintenance sweep registry."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_q.models import Schedule

from cron_app import maintenance
from cron_app.models import CronRun
from cron_app.scheduler import DECLARED_SCHEDULES, arun_ticker, schedules_ensure, start_ticker_thread
from cron_app.services import cron_job_add


def due_job():
    anchor = int((timezone.now() - timedelta(hours=1, seconds=-1)).timestamp() * 1000)
    return cron_job_add(data={"name": "tick", "schedule": {"kind": "every", "everyMs": 3_600_000, "anchorMs": anchor},
                              "payload": {"kind": "systemEvent", "text": "from the ticker"}})  # fmt: skip


@pytest.mark.django_db
def test_schedules_are_declared_idempotently():
    """post_migrate already declared them; ensuring again changes nothing."""
    names = [name for name, _, _ in DECLARED_SCHEDULES]
    assert sorted(Schedule.objects.filter(name__in=names).values_list("name", flat=True)) == sorted(names)
    Schedule.objects.filter(name="openclaw.cron_tick").update(minutes=30)
    schedules_ensure()
    out = StringIO()
    call_command("ensure_schedules", stdout=out)
    rows = Schedule.objects.filter(name__in=names)
    assert rows.count() == 3 and rows.get(name="openclaw.cron_tick").minutes == 1
    assert rows.get(name="openclaw.heartbeat_tick").func == "cron_app.tasks.heartbeat_tick"
    assert rows.get(name="openclaw.maintenance_sweep").schedule_type == Schedule.MINUTES
    assert "openclaw.cron_tick: cron_app.tasks.cron_tick every 1 min" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_run_ticker_thread_fires_due_work_and_stops():
    job = due_job()
    thread, stop = start_ticker_thread(interval_s=0.05)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not CronRun.objects.filter(job_uid=job.job_id, status="ok").exists():
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert CronRun.objects.filter(job_uid=job.job_id).count() == 1


@pytest.mark.django_db(transaction=True)
async def test_arun_ticker_on_an_event_loop():
    job = await sync_to_async(due_job)()
    stop = asyncio.Event()
    task = asyncio.ensure_future(arun_ticker(stop, interval_s=0.05))
    exists = sync_to_async(CronRun.objects.filter(job_uid=job.job_id, status="ok").exists)
    for _ in range(200):
        if await exists():
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert await exists()
    await sync_to_async(lambda: connection.close())()  # the thread-sensitive executor's connection


def test_maintenance_sweeps_run_and_survive_a_failure(monkeypatch):
    calls = []
    monkeypatch.setattr(maintenance, "_SWEEPS", {})
    maintenance.maintenance_sweep("ok")(lambda now: calls.append(now) or 3)
    maintenance.maintenance_sweep("broken")(lambda now: 1 / 0)
    maintenance.maintenance_sweep("after")(lambda now: calls.append("after"))
    results = maintenance.run_sweeps()
    assert results == {"ok": 3, "broken": "error", "after": None}
    assert calls[1] == "after" and maintenance.sweep_names() == ["after", "broken", "ok"]


def test_maintenance_registers_the_cron_sweeps():
    assert {"cron.timeouts", "cron.session-retention"} <= set(maintenance.sweep_names())


@pytest.mark.django_db
def test_cron_run_sessions_are_reaped_after_retention(gateway_config):
    """Isolated run sessions idle past cron.sessionRetention are deleted; others stay."""
    from sessions_app.models import Session
    from sessions_app.services.sessions import session_ensure

    old, _ = session_ensure(key="agent:main:cron:job-1:run:abc", agent_id="main")
    fresh, _ = session_ensure(key="agent:main:cron:job-1:run:def", agent_id="main")
    base, _ = session_ensure(key="agent:main:cron:job-1", agent_id="main")
    Session.objects.filter(pk__in=[old.pk, base.pk]).update(updated_at=timezone.now() - timedelta(hours=25))
    assert maintenance.cron_sessions_reap(timezone.now()) == 1
    assert sorted(Session.objects.values_list("key", flat=True)) == [base.key, fresh.key]
    gateway_config({"cron": {"sessionRetention": False}})
    Session.objects.filter(pk=fresh.pk).update(updated_at=timezone.now() - timedelta(days=9))
    assert maintenance.cron_sessions_reap(timezone.now()) == 0

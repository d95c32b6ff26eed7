"""Cron schedules, firing each slot once, catch-up, backoff, one-shot jobs and delivery."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.db import connection

from cron_app.exceptions import CronJobInvalidError, CronJobNotFoundError
from cron_app.models import CronJob, CronRun
from cron_app.schedules import cron_stagger_ms, first_slot, next_slot, parse_at
from cron_app.services import cron_job_add, cron_job_remove, cron_job_run, cron_job_update, cron_tick
from cron_app.services.deliveries import cron_webhook_deliver
from cron_app.services.runner import insert_run
from sessions_app.models import Run, Session, SystemEvent

from .support import finish_run, start_run

pytestmark = pytest.mark.django_db
UTC = dt_timezone.utc
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
HOUR_MS = 3_600_000


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def main_job(**extra):
    data = {
        "name": "reminder", "schedule": {"kind": "every", "everyMs": HOUR_MS, "anchorMs": T0_MS},
        "sessionTarget": "main", "payload": {"kind": "systemEvent", "text": "stand-up in 5"}, **extra,
    }  # fmt: skip
    return cron_job_add(data=data)


def isolated_job(**extra):
    data = {
        "name": "nightly", "schedule": {"kind": "every", "everyMs": HOUR_MS, "anchorMs": T0_MS},
        "sessionTarget": "isolated", "payload": {"kind": "agentTurn", "message": "summarise the logs"}, **extra,
    }  # fmt: skip
    return cron_job_add(data=data)


def runs(job, status=None):
    rows = CronRun.objects.filter(job_uid=job.job_id).order_by("scheduled_for")
    return list(rows.filter(status=status) if status else rows)


# --- schedules -------------------------------------------------------------------------------


def test_schedule_at_is_one_shot_and_defaults_to_utc():
    schedule = {"kind": "at", "at": "2026-03-02T15:00:00"}
    assert parse_at(schedule["at"]) == datetime(2026, 3, 2, 15, tzinfo=UTC)
    assert next_slot(schedule=schedule, after=T0, job_id="j", created_at=T0) == datetime(2026, 3, 2, 15, tzinfo=UTC)
    assert next_slot(schedule=schedule, after=datetime(2026, 3, 3, tzinfo=UTC), job_id="j", created_at=T0) is None
    assert first_slot(schedule=schedule, now=datetime(2026, 3, 3, tzinfo=UTC), job_id="j", created_at=T0) == parse_at(
        schedule["at"]
    )


def test_schedule_every_counts_from_the_anchor():
    schedule = {"kind": "every", "everyMs": 600_000, "anchorMs": T0_MS}
    assert next_slot(schedule=schedule, after=T0 + timedelta(minutes=5), job_id="j", created_at=T0) == T0 + timedelta(minutes=10)
    assert next_slot(schedule=schedule, after=T0 + timedelta(minutes=10), job_id="j", created_at=T0) == T0 + timedelta(minutes=20)
    assert next_slot(schedule=schedule, after=T0 - timedelta(hours=1), job_id="j", created_at=T0) == T0


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        # 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC after the DST switch (29 March).
        ({"kind": "cron", "expr": "0 9 * * *", "tz": "Europe/Berlin"}, T0, datetime(2026, 3, 3, 8, tzinfo=UTC)),
        ({"kind": "cron", "expr": "0 9 * * *", "tz": "Europe/Berlin"}, datetime(2026, 3, 28, 12, tzinfo=UTC),
         datetime(2026, 3, 29, 7, tzinfo=UTC)),
        ({"kind": "cron", "expr": "30 8 * * 1-5", "tz": "UTC"}, T0, datetime(2026, 3, 3, 8, 30, tzinfo=UTC)),
        # Six fields: seconds first.
        ({"kind": "cron", "expr": "*/15 * * * * *", "tz": "UTC"}, T0, T0 + timedelta(seconds=15)),
        # Top of the hour with staggerMs 0 is exact.
        ({"kind": "cron", "expr": "0 * * * *", "tz": "UTC", "staggerMs": 0}, T0, T0 + timedelta(hours=1)),
    ],
)  # fmt: skip
def test_schedule_cron_in_time_zone(schedule, after, expected):
    assert next_slot(schedule=schedule, after=after, job_id="j", created_at=T0) == expected


def test_schedule_cron_top_of_hour_gets_a_stable_stagger():
    """Recurring top-of-hour expressions get a per-job offset below 5 minutes."""
    schedule = {"kind": "cron", "expr": "0 * * * *", "tz": "UTC"}
    offsets = {cron_stagger_ms(schedule=schedule, job_id=f"job-{i}") for i in range(20)}
    assert all(0 <= offset < 300_000 for offset in offsets) and len(offsets) > 1
    assert cron_stagger_ms(schedule=schedule, job_id="job-1") == cron_stagger_ms(schedule=schedule, job_id="job-1")
    slot = next_slot(schedule=schedule, after=T0, job_id="job-1", created_at=T0)
    assert slot - T0 == timedelta(milliseconds=cron_stagger_ms(schedule=schedule, job_id="job-1"))
    assert cron_stagger_ms(schedule={"kind": "cron", "expr": "15 * * * *"}, job_id="job-1") == 0


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": ""}, "at /name: must be a non-empty string"),
        ({"sessionTarget": "main", "payload": {"kind": "agentTurn", "message": "x"}},
         'sessionTarget "main" requires payload.kind "systemEvent"'),
        ({"sessionTarget": "isolated"}, 'sessionTarget "isolated" requires payload.kind "agentTurn"'),
        ({"delivery": {"mode": "announce"}}, 'delivery mode "announce" is only for sessionTarget "isolated"'),
        ({"delivery": {"mode": "webhook", "to": "ftp://x"}}, "webhook delivery needs an http(s) URL"),
        ({"schedule": {"kind": "cron", "expr": "61 * * * *"}}, "must be a 5- or 6-field cron expression"),
        ({"schedule": {"kind": "cron", "expr": "0 9 * * *", "tz": "Mars/Olympus"}}, "unknown time zone"),
        ({"schedule": {"kind": "every", "everyMs": 0}}, "at /schedule/everyMs: must be an integer >= 1"),
        ({"schedule": {"kind": "at", "at": "tomorrow"}}, "must be an ISO-8601 date-time"),
        ({"schedule": {"kind": "weekly"}}, "at /schedule/kind"),
        ({"payload": {"kind": "systemEvent", "text": "  "}}, "at /payload/text: must be a non-empty string"),
    ],
)  # fmt: skip
def test_cron_job_add_rejects_invalid_jobs(data, message):
    base = {"name": "n", "schedule": {"kind": "every", "everyMs": 1000}, "payload": {"kind": "systemEvent", "text": "t"}}
    with pytest.raises(CronJobInvalidError) as caught:
        cron_job_add(data={**base, **data})
    assert caught.value.message.startswith("invalid cron.add params: ") and message in caught.value.message
    assert caught.value.details == {"code": "INVALID_CRON_JOB"}
    assert not CronJob.objects.exists()


def test_cron_job_add_defaults(clock, gateway_config):
    """Isolated jobs announce by default, at jobs delete after running, unknown agents → default."""
    gateway_config({"agents": {"list": [{"id": "primary", "default": True}, {"id": "ops"}]}})
    job = isolated_job(agentId="ghost")
    assert (job.delivery, job.agent_id, job.catch_up, job.wake_mode) == ({"mode": "announce"}, "primary", "once", "now")
    once = main_job(schedule={"kind": "at", "at": "2026-03-02T13:00:00Z"}, agentId="OPS")
    assert (once.delete_after_run, once.next_run_at, once.agent_id) == (True, T0 + timedelta(hours=1), "ops")


def test_cron_job_update_recomputes_and_keeps_payload_kind(clock):
    job = main_job()
    updated = cron_job_update(job_id=job.job_id, patch={"payload": {"text": "new text"}, "enabled": False})
    assert updated.payload == {"kind": "systemEvent", "text": "new text"} and updated.next_run_at is None
    updated = cron_job_update(job_id=job.job_id, patch={"enabled": True, "schedule": {"kind": "every", "everyMs": 60_000, "anchorMs": T0_MS}})
    assert updated.next_run_at == T0 + timedelta(minutes=1)
    with pytest.raises(CronJobNotFoundError):
        cron_job_update(job_id="nope", patch={})


# --- firing ---------------------------------------------------------------------------------


def test_cron_main_job_fires_once_per_slot(clock):
    """A due main job queues its text (context cron:<id>), wakes now, logs one ok run."""
    job = main_job()
    assert job.next_run_at == T0 + timedelta(hours=1)
    assert cron_tick() == []
    clock.move_to(T0 + timedelta(hours=1))
    assert len(cron_tick()) == 1
    assert cron_tick() == []  # the same slot never fires twice
    run = runs(job)[0]
    assert (run.status, run.scheduled_for, run.summary) == ("ok", T0 + timedelta(hours=1), "stand-up in 5")
    event = SystemEvent.objects.get()
    assert (event.session_key, event.context_key, event.text) == ("agent:main:main", f"cron:{job.job_id}", "stand-up in 5")
    heartbeat = Run.objects.get(kind="heartbeat")
    assert (heartbeat.input["source"], heartbeat.input["reason"], run.run_id) == ("cron", f"cron:{job.job_id}", heartbeat.run_id)
    job.refresh_from_db()
    assert (job.next_run_at, job.last_status, job.running_at) == (T0 + timedelta(hours=2), "ok", None)


def test_cron_main_job_next_heartbeat_rides_the_schedule(clock):
    """wakeMode next-heartbeat hands an ``event`` wake over; after a recent heartbeat it waits."""
    from cron_app.services import heartbeat_request

    job = main_job(wakeMode="next-heartbeat")
    clock.move_to(T0 + timedelta(minutes=55))
    heartbeat_request(source="manual", intent="manual", reason="seed", agent_id="main")
    finish_run(Run.objects.get(kind="heartbeat"), text="HEARTBEAT_OK")
    clock.move_to(T0 + timedelta(hours=1))
    cron_tick()
    assert runs(job)[0].status == "ok"
    assert Run.objects.filter(kind="heartbeat").count() == 1
    assert SystemEvent.objects.pending().filter(context_key=f"cron:{job.job_id}").exists()


@pytest.mark.parametrize(
    ("catch_up", "missed", "ran"),
    [("once", 2, [3]), ("skip", 3, []), ("all", 0, [1, 2, 3])],
)
def test_cron_catch_up_after_three_hours_down(clock, catch_up, missed, ran):
    """Down from 12:30 to 15:30 with an hourly job: the policy decides which slots run."""
    job = main_job(catchUp=catch_up)
    clock.move_to(T0 + timedelta(hours=3, minutes=30))
    cron_tick()
    assert len(runs(job, "missed")) == missed
    assert [(r.scheduled_for - T0) // timedelta(hours=1) for r in runs(job, "ok")] == ran
    job.refresh_from_db()
    assert job.next_run_at == T0 + timedelta(hours=4)
    cron_tick()
    assert len(runs(job)) == missed + len(ran)


def test_cron_catch_up_skip_still_runs_a_slot_that_is_only_a_little_late(clock):
    job = main_job(catchUp="skip")
    clock.move_to(T0 + timedelta(hours=3, seconds=30))
    cron_tick()
    assert [r.status for r in runs(job)] == ["missed", "missed", "ok"]


def test_cron_one_shot_missed_with_skip_is_disabled(clock):
    job = main_job(schedule={"kind": "at", "at": "2026-03-02T13:00:00Z"}, catchUp="skip")
    clock.move_to(T0 + timedelta(hours=5))
    cron_tick()
    job.refresh_from_db()
    assert (job.enabled, job.next_run_at, [r.status for r in runs(job)]) == (False, None, ["missed"])


def test_cron_slot_insert_wins_once():
    """The (job, slot) unique constraint: the second insert of a slot loses."""
    job = main_job()
    assert insert_run(job, T0) is not None
    assert insert_run(job, T0) is None
    assert CronRun.objects.count() == 1


def test_cron_restart_never_reruns_a_slot(clock):
    """A crash after the claim (run still ``running``) is not re-fired by a new process;
    the stale run times out instead and the next slot runs normally."""
    job = isolated_job()
    clock.move_to(T0 + timedelta(hours=1))
    cron_tick()
    # "restart": nothing in memory, a new tick reads the same rows.
    clock.shift(timedelta(minutes=5))
    assert cron_tick() == []
    assert len(runs(job)) == 1
    clock.shift(timedelta(minutes=6))
    cron_tick()
    first = runs(job)[0]
    assert (first.status, first.error) == ("error", "cron: job execution timed out")
    assert Run.objects.get(run_id=first.run_id).status == "aborted"
    clock.move_to(T0 + timedelta(hours=2))
    cron_tick()
    assert [r.status for r in runs(job)] == ["error", "running"]


def test_cron_error_backoff(clock):
    """Consecutive errors push the next run out by 30 s, 1 min, 5 min (unless later anyway)."""
    job = isolated_job(schedule={"kind": "every", "everyMs": 10_000, "anchorMs": T0_MS})
    expected = [40, 100, 400]
    moment = T0 + timedelta(seconds=10)
    for seconds in expected:
        clock.move_to(moment)
        cron_tick()
        turn = Run.objects.filter(kind="cron", status="queued").get()
        finish_run(turn, status=Run.Status.ERROR, error={"message": "model down"})
        job.refresh_from_db()
        assert job.next_run_at == T0 + timedelta(seconds=seconds)
        moment = job.next_run_at
    clock.move_to(moment)
    cron_tick()
    finish_run(Run.objects.filter(kind="cron", status="queued").get(), text="fine now")
    job.refresh_from_db()
    assert (job.consecutive_errors, job.next_run_at) == (0, moment + timedelta(seconds=10))


def test_cron_isolated_job_runs_in_a_fresh_session_and_announces(clock):
    """An isolated job's turn runs in agent:<a>:cron:<id>:run:<uuid>; its summary is
    announced to the main session as a cron:<id> system event with a wake."""
    job = isolated_job()
    clock.move_to(T0 + timedelta(hours=1))
    cron_tick()
    run = runs(job)[0]
    turn = Run.objects.get(kind="cron")
    assert run.session_key == f"agent:main:cron:{job.job_id}:run:{run.session_id}" == turn.session_key
    assert Session.objects.get(key=turn.session_key).session_id == run.session_id
    assert Session.objects.filter(key=f"agent:main:cron:{job.job_id}").exists()
    assert turn.input["message"].startswith(f"[cron:{job.job_id} nightly] summarise the logs")
    job.refresh_from_db()
    assert job.running_at is not None
    finish_run(start_run(turn), text="All 3 services healthy.")
    run.refresh_from_db()
    assert (run.status, run.summary, run.delivered, run.delivery_status) == ("ok", "All 3 services healthy.", True, "delivered")
    event = SystemEvent.objects.get(context_key=f"cron:{job.job_id}")
    assert (event.session_key, event.text) == ("agent:main:main", "Cron: All 3 services healthy.")
    assert Run.objects.filter(kind="heartbeat", session_key="agent:main:main").exists()
    job.refresh_from_db()
    assert (job.running_at, job.last_status, job.state["lastDeliveryStatus"]) == (None, "ok", "delivered")


def test_cron_one_shot_jobs_delete_or_disable(clock):
    """An ok ``at`` job with deleteAfterRun is deleted (its log stays); a failed one is disabled."""
    done = main_job(schedule={"kind": "at", "at": "2026-03-02T13:00:00Z"})
    failing = isolated_job(schedule={"kind": "at", "at": "2026-03-02T13:00:00Z"})
    clock.move_to(T0 + timedelta(hours=1))
    cron_tick()
    assert not CronJob.objects.filter(pk=done.pk).exists()
    assert CronRun.objects.get(job_uid=done.job_id).status == "ok"
    assert SystemEvent.objects.filter(context_key=f"cron:{done.job_id}").exists()
    finish_run(Run.objects.get(kind="cron"), status=Run.Status.ERROR, error={"message": "boom"})
    failing.refresh_from_db()
    assert (failing.enabled, failing.next_run_at, failing.last_status) == (False, None, "error")


def test_cron_max_concurrent_runs(clock):
    """With maxConcurrentRuns 1, a second due isolated job waits for the first to finish."""
    first, second = isolated_job(), isolated_job(name="second")
    clock.move_to(T0 + timedelta(hours=1))
    cron_tick()
    assert Run.objects.filter(kind="cron").count() == 1
    finish_run(Run.objects.get(kind="cron"), text="done")
    cron_tick()
    assert Run.objects.filter(kind="cron").count() == 2
    assert {len(runs(first)), len(runs(second))} == {1}


def test_cron_run_force_due_and_already_running(clock):
    job = isolated_job()
    assert cron_job_run(job=job, mode="due") == {"ok": True, "ran": False, "reason": "not-due"}
    assert cron_job_run(job=job) == {"ok": True, "ran": True}
    job.refresh_from_db()
    assert job.next_run_at == T0 + timedelta(hours=1) and runs(job)[0].manual
    assert cron_job_run(job=job) == {"ok": True, "ran": False, "reason": "already-running"}


def test_cron_remove_drops_its_system_events(clock):
    job = main_job(wakeMode="next-heartbeat")
    cron_job_run(job=job)
    assert SystemEvent.objects.pending().filter(context_key=f"cron:{job.job_id}").exists()
    assert cron_job_remove(job_id=job.job_id) == {"ok": True, "removed": True}
    assert not SystemEvent.objects.exists()
    assert CronRun.objects.filter(job_uid=job.job_id).count() == 1  # the log survives
    with pytest.raises(CronJobNotFoundError) as caught:
        cron_job_remove(job_id=job.job_id)
    assert caught.value.message == "invalid cron.remove params: id not found"
    assert caught.value.details["code"] == "CRON_JOB_NOT_FOUND"


def test_cron_disabled_by_env_fires_nothing(clock, monkeypatch):
    main_job()
    monkeypatch.setenv("OPENCLAW_SKIP_CRON", "1")
    clock.move_to(T0 + timedelta(hours=1))
    assert cron_tick() == [] and not CronRun.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_cron_concurrent_ticks_fire_a_slot_once():
    """Two clusters ticking at the same instant (two threads, two connections): one run."""
    if connection.vendor == "sqlite" and connection.settings_dict["NAME"].startswith("file:memorydb"):
        pytest.skip("needs a file database")
    with time_machine.travel(T0, tick=False) as clock:
        jobs = [main_job(name=f"job {i}") for i in range(5)]
        clock.move_to(T0 + timedelta(hours=1))
        barrier, fired, errors = threading.Barrier(2), [], []

        def tick():
            try:
                barrier.wait(5)
                fired.extend(cron_tick())
            except Exception as exc:  # surfaced below
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=tick) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        # maxConcurrentRuns (1) may have made both skip a job this round; the next tick
        # catches up, and still no slot runs twice.
        fired.extend(cron_tick())
    assert not errors
    assert sorted(run.job_uid for run in fired) == sorted(job.job_id for job in jobs)
    for job in jobs:
        assert CronRun.objects.filter(job_uid=job.job_id).count() == 1


# --- webhooks -------------------------------------------------------------------------------


class _Hook(BaseHTTPRequestHandler):
    status = 200
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"auth": self.headers.get("Authorization"), "body": json.loads(body)})
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook_server():
    handler = type("Hook", (_Hook,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    server.server_close()


def test_cron_webhook_posts_the_finished_event(webhook_server, gateway_config, django_capture_on_commit_callbacks):
    """The finished event goes to a real local HTTP server with the bearer token; the
    POST is queued as a django-q2 task after commit (on whichever broker is configured:
    the ORM on the embedded default, Redis with REDIS_URL)."""
    from django_q.brokers import get_broker

    broker = get_broker()
    queued_before = broker.queue_size()
    handler, url = webhook_server
    gateway_config({"cron": {"webhookToken": "s3cret"}})
    job = main_job(delivery={"mode": "webhook", "to": url})
    with django_capture_on_commit_callbacks(execute=True):
        cron_job_run(job=job)
    assert broker.queue_size() == queued_before + 1
    run = CronRun.objects.get(job_uid=job.job_id)
    assert run.delivery_status == "unknown"
    run = cron_webhook_deliver(run_pk=run.pk)
    assert (run.delivered, run.delivery_status, run.delivery_attempts) == (True, "delivered", 1)
    [request] = handler.received
    assert request["auth"] == "Bearer s3cret"
    assert request["body"]["action"] == "finished" and request["body"]["jobId"] == job.job_id
    assert request["body"]["status"] == "ok" and request["body"]["summary"] == "stand-up in 5"
    job.refresh_from_db()
    assert job.state["lastDeliveryStatus"] == "delivered"


def test_cron_webhook_failures_are_retried_and_recorded(webhook_server, settings):
    handler, url = webhook_server
    handler.status = 500
    settings.OPENCLAW_CRON_WEBHOOK_RETRY_DELAYS_S = (0.01, 0.01)
    job = main_job(delivery={"mode": "webhook", "to": url})
    cron_job_run(job=job)
    run = cron_webhook_deliver(run_pk=CronRun.objects.get(job_uid=job.job_id).pk)
    assert (run.delivered, run.delivery_status, run.delivery_error, run.delivery_attempts) == (
        False, "not-delivered", "HTTP 500", 3,
    )  # fmt: skip
    assert len(handler.received) == 3

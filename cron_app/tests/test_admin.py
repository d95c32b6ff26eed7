"""The cron and heartbeat admin: pages render, actions go through the services."""

from __future__ import annotations

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model

from cron_app.models import CronJob, CronRun, HeartbeatState, SchedulerState
from cron_app.services import cron_job_add
from sessions_app.models import Run, SystemEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    user = get_user_model().objects.create_superuser("op", "op@example.com", "pw-123456")
    client.force_login(user)
    return client


@pytest.fixture
def job():
    return cron_job_add(data={"name": "reminder", "schedule": {"kind": "cron", "expr": "0 9 * * *", "tz": "UTC"},
                              "payload": {"kind": "systemEvent", "text": "stand-up"}, "wakeMode": "next-heartbeat"})  # fmt: skip


def act(client, url, action, pks):
    return client.post(url, {"action": action, ACTION_CHECKBOX_NAME: [str(pk) for pk in pks]}, follow=True)


def test_admin_pages_render(operator, job):
    for url in ("/admin/cron_app/cronjob/", f"/admin/cron_app/cronjob/{job.pk}/change/", "/admin/cron_app/cronrun/",
                "/admin/cron_app/heartbeatstate/", "/admin/cron_app/schedulerstate/"):  # fmt: skip
        response = operator.get(url)
        assert response.status_code == 200, url
    assert b"cron 0 9 * * * UTC" in operator.get("/admin/cron_app/cronjob/").content


def test_admin_run_now_disable_enable_remove(operator, job):
    url = "/admin/cron_app/cronjob/"
    assert b": started." in act(operator, url, "run_now", [job.pk]).content
    assert CronRun.objects.get(job_uid=job.job_id).manual
    assert SystemEvent.objects.filter(context_key=f"cron:{job.job_id}").exists()
    act(operator, url, "disable_jobs", [job.pk])
    job.refresh_from_db()
    assert (job.enabled, job.next_run_at) == (False, None)
    act(operator, url, "enable_jobs", [job.pk])
    job.refresh_from_db()
    assert job.enabled and job.next_run_at is not None
    act(operator, url, "remove_jobs", [job.pk])
    assert not CronJob.objects.exists() and not SystemEvent.objects.exists()


def test_admin_heartbeat_actions(operator):
    operator.get("/admin/cron_app/schedulerstate/")
    act(operator, "/admin/cron_app/schedulerstate/", "disable_heartbeats", [1])
    assert SchedulerState.objects.get().heartbeats_enabled is False
    act(operator, "/admin/cron_app/schedulerstate/", "enable_heartbeats", [1])
    state = HeartbeatState.objects.create(agent_id="main")
    response = act(operator, "/admin/cron_app/heartbeatstate/", "ping_now", [state.pk])
    assert b"Main: queued admin" in response.content
    assert Run.objects.get().kind == "heartbeat"

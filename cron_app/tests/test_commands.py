"""The system_event, wake and cron commands, on the local database and against a live
gateway over the WebSocket protocol (--url/--token)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from cron_app.models import CronJob
from sessions_app.models import Run, SystemEvent
from tests.support.live import ROOT

pytestmark = pytest.mark.django_db


def run_command(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().strip()


def test_system_event_command_local():
    assert json.loads(run_command("system_event", "--text", "disk full", "--mode", "now", "--json")) == {"ok": True}
    event = SystemEvent.objects.get()
    assert (event.session_key, event.text) == ("agent:main:main", "disk full")
    assert Run.objects.get().kind == "heartbeat"


def test_system_event_command_whitespace_key_is_omitted():
    """``--session-key "  "`` is not sent, so next-heartbeat does not wake anything."""
    assert run_command("system_event", "--text", "later", "--session-key", "  ") == "ok"
    assert SystemEvent.objects.get().session_key == "agent:main:main"
    assert not Run.objects.exists()


def test_system_event_command_session_key_wakes_at_once():
    run_command("system_event", "--text", "job done", "--session-key", "agent:main:work")
    assert Run.objects.get().session_key == "agent:main:work"


def test_system_event_command_errors():
    with pytest.raises(CommandError, match="INVALID_REQUEST: wake sessionKey cannot target a subagent session"):
        run_command("system_event", "--text", "x", "--session-key", "agent:main:subagent:abc")


def test_wake_command_without_text_is_a_manual_ping():
    rows = json.loads(run_command("wake", "--json"))
    assert [(r["agentId"], r["status"]) for r in rows] == [("main", "queued")]
    assert Run.objects.get().input["intent"] == "manual"
    assert not SystemEvent.objects.exists()


def test_cron_command_round_trip():
    job = json.loads(run_command("cron", "add", "--name", "standup", "--every", "30m", "--system-event", "stand-up"))
    assert job["schedule"]["everyMs"] == 1_800_000 and job["sessionTarget"] == "main"
    assert [j["id"] for j in json.loads(run_command("cron", "list"))["jobs"]] == [job["id"]]
    assert json.loads(run_command("cron", "run", job["id"])) == {"ok": True, "ran": True}
    entries = json.loads(run_command("cron", "runs", job["id"]))["entries"]
    assert [(e["status"], e["summary"]) for e in entries] == [("ok", "stand-up")]
    run_command("cron", "disable", job["id"])
    assert CronJob.objects.get().enabled is False
    assert json.loads(run_command("cron", "list"))["jobs"] == []
    assert json.loads(run_command("cron", "remove", job["id"])) == {"ok": True, "removed": True}
    with pytest.raises(CommandError, match="INVALID_REQUEST: invalid cron.remove params: id not found"):
        run_command("cron", "remove", job["id"])
    with pytest.raises(CommandError, match="--every"):
        run_command("cron", "add", "--name", "x", "--every", "soon", "--system-event", "x")


# --- against a live gateway ---------------------------------------------------------------


def remote_cli(gateway, *args, token=None) -> subprocess.CompletedProcess:
    """Run the command in a separate process whose own database is empty: only the
    remote gateway can have done the work."""
    env = {**os.environ, "DATABASE_URL": "sqlite:////nonexistent/never-opened.sqlite3",
           "DJANGO_SECRET_KEY": "cli", "OPENCLAW_STATE_DIR": str(gateway.state_dir / "cli")}  # fmt: skip
    env.pop("OPENCLAW_TEST_DB_NAME", None)
    command = [sys.executable, str(ROOT / "manage.py"), args[0], "--skip-checks", *args[1:],
               "--url", gateway.ws_url, "--token", token or gateway.token]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.live
def test_system_event_command_against_a_live_gateway(live_gateway):
    result = remote_cli(live_gateway, "system_event", "--text", "tap-event", "--mode", "now",
                        "--session-key", "agent:main:main", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ok": True}
    event = SystemEvent.objects.get(text="tap-event")
    assert event.session_key == "agent:main:main" and event.origin == "wake"
    assert Run.objects.filter(kind="heartbeat", session_key="agent:main:main").exists()


@pytest.mark.live
def test_system_event_command_remote_errors(live_gateway):
    result = remote_cli(live_gateway, "system_event", "--text", "x", token="wrong-token")
    assert result.returncode == 1
    assert "INVALID_REQUEST: unauthorized: gateway token mismatch" in result.stderr
    result = remote_cli(live_gateway, "system_event", "--text", "x", "--session-key", "agent:main:subagent:a")
    assert result.returncode == 1 and "wake sessionKey cannot target a subagent session" in result.stderr
    assert not SystemEvent.objects.exists()


@pytest.mark.live
def test_cron_command_against_a_live_gateway(live_gateway):
    added = remote_cli(live_gateway, "cron", "add", "--name", "remote", "--every", "1h", "--message", "check")
    assert added.returncode == 0, added.stderr
    job = json.loads(added.stdout)
    assert (job["sessionTarget"], job["delivery"]) == ("isolated", {"mode": "announce"})
    listed = remote_cli(live_gateway, "cron", "list")
    assert [j["id"] for j in json.loads(listed.stdout)["jobs"]] == [job["id"]]
    assert CronJob.objects.get().job_id == job["id"]

"""Heartbeat scheduling, wake gates, coalescing and the reply contract, with frozen time."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
import time_machine

from cron_app.models import HeartbeatState
from cron_app.schedules import heartbeat_next_due, heartbeat_phase_ms, within_active_hours
from cron_app.selectors import heartbeat_last
from cron_app.services import (
    heartbeat_request,
    heartbeat_tick,
    heartbeats_set_enabled,
    strip_heartbeat_token,
    wake,
)
from sessions_app.models import Run, Session, TranscriptEntry
from sessions_app.services.runs import run_enqueue
from sessions_app.services.sessions import session_ensure

from .support import finish_run, start_run

pytestmark = pytest.mark.django_db
UTC = dt_timezone.utc
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def at(hour, minute=0, day=2):
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def heartbeat_runs():
    return Run.objects.filter(kind=Run.Kind.HEARTBEAT)


# --- active hours and due times -----------------------------------------------------------


@pytest.mark.parametrize(
    ("hours", "moment", "active"),
    [
        (None, at(3), True),
        ({"start": "09:00", "end": "17:00", "timezone": "UTC"}, at(8, 59), False),
        ({"start": "09:00", "end": "17:00", "timezone": "UTC"}, at(9), True),
        ({"start": "09:00", "end": "17:00", "timezone": "UTC"}, at(16, 59), True),
        ({"start": "09:00", "end": "17:00", "timezone": "UTC"}, at(17), False),
        # Wrapping midnight.
        ({"start": "22:00", "end": "06:00", "timezone": "UTC"}, at(23), True),
        ({"start": "22:00", "end": "06:00", "timezone": "UTC"}, at(5, 59), True),
        ({"start": "22:00", "end": "06:00", "timezone": "UTC"}, at(6), False),
        ({"start": "22:00", "end": "06:00", "timezone": "UTC"}, at(12), False),
        # start == end is never active; 24:00 is the end of the day.
        ({"start": "08:00", "end": "08:00", "timezone": "UTC"}, at(8), False),
        ({"start": "00:00", "end": "24:00", "timezone": "UTC"}, at(23, 59), True),
        # Time zones: 09:00-17:00 in New York is 14:00-22:00 UTC in winter (EST).
        ({"start": "09:00", "end": "17:00", "timezone": "America/New_York"}, at(13, 59), False),
        ({"start": "09:00", "end": "17:00", "timezone": "America/New_York"}, at(14), True),
        # Invalid times count as always active.
        ({"start": "9am", "end": "5pm"}, at(3), True),
    ],
)
def test_within_active_hours(hours, moment, active):
    assert within_active_hours(hours, moment) is active


def test_within_active_hours_user_timezone():
    """``timezone: "user"`` (the default) uses agents.defaults.userTimezone."""
    hours = {"start": "09:00", "end": "17:00", "timezone": "user"}
    assert within_active_hours(hours, at(8, 30), user_timezone="Europe/Berlin") is True  # 09:30 CET
    assert within_active_hours(hours, at(8, 30), user_timezone=None) is False  # local = UTC


def test_heartbeat_next_due_is_a_phase_slot_inside_active_hours():
    """Slots are k·interval + phase; outside the window the first slot inside is chosen."""
    hour = 3_600_000
    phase = heartbeat_phase_ms(agent_id="main", interval_ms=hour)
    assert phase == heartbeat_phase_ms(agent_id="main", interval_ms=hour)  # stable
    due = heartbeat_next_due(now=at(12), interval_ms=hour, phase_ms=phase)
    assert at(12) < due <= at(13) and (int(due.timestamp() * 1000) - phase) % hour == 0
    night = {"start": "22:00", "end": "06:00", "timezone": "UTC"}
    due = heartbeat_next_due(now=at(12), interval_ms=hour, phase_ms=phase, active_hours=night)
    assert at(22) <= due < at(23)


# --- scheduling -----------------------------------------------------------------------------


def test_heartbeat_tick_runs_once_per_due_slot(gateway_config, clock):
    """Not due → nothing; at the due time one run, however many ticks; then the next slot."""
    gateway_config({"agents": {"defaults": {"heartbeat": {"every": "30m"}}}})
    heartbeat_tick()
    due = HeartbeatState.objects.get(agent_id="main").next_due_at
    assert T0 < due <= T0 + timedelta(minutes=30)
    clock.move_to(due - timedelta(seconds=1))
    heartbeat_tick()
    assert not heartbeat_runs().exists()
    clock.move_to(due)
    heartbeat_tick()
    heartbeat_tick()  # a second cluster ticking at the same moment
    run = heartbeat_runs().get()
    assert (run.session_key, run.input["heartbeat"], run.input["intent"]) == ("agent:main:main", True, "scheduled")
    assert run.input["message"].startswith("Read HEARTBEAT.md")
    assert HeartbeatState.objects.get(agent_id="main").next_due_at == due + timedelta(minutes=30)


def test_heartbeat_schedule_waits_for_active_hours(gateway_config, clock):
    """With night-only active hours, the noon tick schedules the first slot after 22:00."""
    night = {"start": "22:00", "end": "06:00", "timezone": "UTC"}
    gateway_config({"agents": {"defaults": {"heartbeat": {"every": "1h", "activeHours": night}}}})
    heartbeat_tick()
    due = HeartbeatState.objects.get(agent_id="main").next_due_at
    assert at(22) <= due < at(23)


def test_heartbeat_wake_now_outside_active_hours_is_quiet(gateway_config, clock):
    """A wake outside the active hours is skipped as quiet-hours; the event stays queued."""
    office = {"start": "09:00", "end": "10:00", "timezone": "UTC"}
    gateway_config({"agents": {"defaults": {"heartbeat": {"every": "1h", "activeHours": office}}}})
    wake(mode="now", text="ping", session_key="agent:main:main")
    assert not heartbeat_runs().exists()
    state = HeartbeatState.objects.get(agent_id="main")
    assert (state.last_status, state.last_skip_reason) == ("skipped", "quiet-hours")
    assert heartbeat_last()["reason"] == "quiet-hours"


def test_heartbeat_config_reload_keeps_the_due_time(gateway_config, clock):
    """The same interval and hours keep the due time; a new interval recomputes it."""
    gateway_config({"agents": {"defaults": {"heartbeat": {"every": "30m"}}}})
    heartbeat_tick()
    due = HeartbeatState.objects.get().next_due_at
    clock.move_to(due - timedelta(seconds=1))
    gateway_config({"agents": {"defaults": {"heartbeat": {"every": "30m", "prompt": "new prompt"}}}})
    heartbeat_tick()
    assert HeartbeatState.objects.get().next_due_at == due
    gateway_config({"agents": {"defaults": {"heartbeat": {"every": "2h"}}}})
    heartbeat_tick()
    assert HeartbeatState.objects.get().next_due_at != due


def test_heartbeat_every_zero_disables_scheduling_but_targeted_wake_runs_once(gateway_config, clock):
    """``every: 0m``: no scheduled heartbeats and untargeted wakes do nothing; a targeted
    wake-now of the configured agent still runs once."""
    gateway_config({"agents": {"defaults": {"heartbeat": {"every": "0m"}}}})
    heartbeat_tick()
    wake(mode="now", text="untargeted")
    assert not heartbeat_runs().exists()
    wake(mode="now", text="targeted", session_key="agent:main:main")
    assert heartbeat_runs().count() == 1


# --- gates ----------------------------------------------------------------------------------


def test_heartbeat_burst_of_wakes_is_coalesced(gateway_config, clock):
    """200 wake-now calls while the run is queued, then running, then done: a handful of
    runs (one queued per session, busy wakes parked, the flood guard caps the rest)."""
    for index in range(200):
        wake(mode="now", text=f"event {index}")
        if index % 20 == 10:
            run = heartbeat_runs().filter(status=Run.Status.QUEUED).first()
            if run is not None:
                start_run(run)
        if index % 20 == 19:
            for running in heartbeat_runs().filter(status=Run.Status.RUNNING):
                finish_run(running, text="HEARTBEAT_OK")
            clock.shift(timedelta(seconds=2))
            heartbeat_tick()
    assert 1 <= heartbeat_runs().count() <= 5
    assert heartbeat_runs().filter(status=Run.Status.QUEUED).count() <= 1


def test_heartbeat_wakes_coalesce_into_one_queued_run(gateway_config, clock):
    """While a heartbeat run waits in the queue, further wakes join it."""
    for _ in range(200):
        wake(mode="now", text="again and again")
    assert heartbeat_runs().count() == 1


def test_heartbeat_flood_guard_defers_after_five_runs(gateway_config, clock):
    """Five run starts within 60 s defer the next wake (``flood``) unless it is manual."""
    for _ in range(5):
        wake(mode="now", text="x", session_key="agent:main:main")
        finish_run(heartbeat_runs().get(status=Run.Status.QUEUED), text="HEARTBEAT_OK")
        clock.shift(timedelta(seconds=1))
    outcome = heartbeat_request(source="manual", intent="immediate", reason="wake", agent_id="main")[0]
    assert (outcome.status, outcome.reason) == ("deferred", "flood")
    outcome = heartbeat_request(source="manual", intent="manual", reason="ping", agent_id="main")[0]
    assert outcome.status == "queued"
    clock.shift(timedelta(seconds=61))
    finish_run(heartbeat_runs().get(status=Run.Status.QUEUED), text="HEARTBEAT_OK")
    assert heartbeat_request(source="manual", intent="immediate", reason="wake", agent_id="main")[0].status == "queued"


def test_heartbeat_flood_parks_a_targeted_wake_until_the_window_passes(gateway_config, clock):
    """A targeted wake deferred by the flood guard is not lost: it runs once the 60 s
    window of the earlier runs has passed."""
    for _ in range(5):
        wake(mode="now", text="x", session_key="agent:main:main")
        finish_run(heartbeat_runs().get(status=Run.Status.QUEUED), text="HEARTBEAT_OK")
    wake(mode="now", text="important", session_key="agent:main:ops-room")
    assert not heartbeat_runs().filter(session_key="agent:main:ops-room").exists()
    assert HeartbeatState.objects.get(agent_id="main").last_skip_reason == "flood"
    clock.shift(timedelta(seconds=30))
    heartbeat_tick()
    assert not heartbeat_runs().filter(session_key="agent:main:ops-room").exists()
    clock.shift(timedelta(seconds=31))
    heartbeat_tick()
    assert heartbeat_runs().filter(session_key="agent:main:ops-room").count() == 1


def test_heartbeat_busy_session_retries_after_one_second(gateway_config, clock):
    """A wake of a session with a running turn parks (``requests-in-flight``); ticks retry
    it every second and the end of the blocking run retries it at once."""
    session, _ = session_ensure(key="agent:main:main", agent_id="main")
    user_run, _ = run_enqueue(session=session, agent_id="main", input={"message": "hello"})
    start_run(user_run)
    wake(mode="now", text="deploy done", session_key="agent:main:main")
    assert not heartbeat_runs().exists()
    state = HeartbeatState.objects.get(agent_id="main")
    assert state.last_skip_reason == "requests-in-flight" and state.pending_wakes
    clock.shift(timedelta(milliseconds=500))
    heartbeat_tick()  # too early, and the session is still busy
    assert not heartbeat_runs().exists()
    clock.shift(timedelta(seconds=1))
    heartbeat_tick()  # due, still busy: parked again
    assert not heartbeat_runs().exists() and HeartbeatState.objects.get(agent_id="main").pending_wakes
    finish_run(user_run, text="hi")  # the lane frees up: the parked wake runs at once
    run = heartbeat_runs().get()
    assert (run.session_key, run.input["reason"]) == ("agent:main:main", "wake")
    assert not HeartbeatState.objects.get(agent_id="main").pending_wakes
    clock.shift(timedelta(seconds=2))
    heartbeat_tick()
    assert heartbeat_runs().count() == 1


def test_heartbeat_parked_wake_retried_by_the_tick(gateway_config, clock):
    """Without a run ending (a queued user run blocks instead), the tick retries after 1 s."""
    session, _ = session_ensure(key="agent:main:main", agent_id="main")
    blocker, _ = run_enqueue(session=session, agent_id="main", input={"message": "queued"})
    wake(mode="now", text="x", session_key="agent:main:main")
    assert not heartbeat_runs().exists()
    Run.objects.filter(pk=blocker.pk).update(status=Run.Status.ABORTED)  # gone without a hook
    heartbeat_tick()
    assert not heartbeat_runs().exists()  # retry not due yet
    clock.shift(timedelta(seconds=1))
    heartbeat_tick()
    assert heartbeat_runs().count() == 1


def test_heartbeat_event_intent_runs_first_then_waits_for_due(gateway_config, clock):
    """An ``event`` wake runs when the agent never ran; later ones are ``not-due``."""
    gateway_config({"agents": {"defaults": {"heartbeat": {"every": "30m"}}}})
    assert heartbeat_request(source="exec-event", intent="event", reason="exec", agent_id="main")[0].status == "queued"
    finish_run(heartbeat_runs().get(), text="HEARTBEAT_OK")
    clock.shift(timedelta(minutes=5))
    outcome = heartbeat_request(source="exec-event", intent="event", reason="exec", agent_id="main")[0]
    assert (outcome.status, outcome.reason) == ("deferred", "not-due")


def test_set_heartbeats_disables_every_request(gateway_config, clock):
    """With heartbeats off every request is ``skipped/disabled``; back on, they run."""
    heartbeats_set_enabled(enabled=False)
    wake(mode="now", text="x", session_key="agent:main:main")
    assert not heartbeat_runs().exists()
    assert heartbeat_last()["status"] == "skipped" and heartbeat_last()["reason"] == "disabled"
    heartbeats_set_enabled(enabled=True)
    wake(mode="now", text="y", session_key="agent:main:main")
    assert heartbeat_runs().count() == 1


def test_heartbeat_runs_in_a_fresh_isolated_session_when_configured(gateway_config, clock):
    gateway_config({"agents": {"defaults": {"heartbeat": {"every": "30m", "isolatedSession": True}}}})
    wake(mode="now", text="x")
    assert heartbeat_runs().get().session_key == "agent:main:main:heartbeat"


# --- the reply contract --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "ack", "rest"),
    [
        ("HEARTBEAT_OK", True, ""),
        ("  HEARTBEAT_OK  ", True, ""),
        ("", True, ""),
        ("**HEARTBEAT_OK**", True, ""),
        ("<b>HEARTBEAT_OK</b>", True, ""),
        ("HEARTBEAT_OK!", True, ""),
        ("All quiet. HEARTBEAT_OK", True, "All quiet."),
        ("HEARTBEAT_OK nothing to do", True, "nothing to do"),
        ("The build is red. Fix it.", False, "The build is red. Fix it."),
        ("Status HEARTBEAT_OK in the middle", False, "Status HEARTBEAT_OK in the middle"),
        ("HEARTBEAT_OK " + "x" * 301, False, "x" * 301),
        ("HEARTBEAT_OK!!!!!", True, "!!!!!"),  # only ≤ 4 trailing marks belong to an end token
    ],
)
def test_strip_heartbeat_token(reply, ack, rest):
    result = strip_heartbeat_token(reply, max_ack_chars=300)
    assert (result.ack, result.text) == (ack, rest)


def _heartbeat_reply(text, **config):
    wake(mode="now", text="check", session_key="agent:main:main")
    run = heartbeat_runs().filter(status=Run.Status.QUEUED).get()
    return finish_run(start_run(run), text=text)


def test_heartbeat_ack_is_silent_and_restores_updated_at(gateway_config, clock):
    """HEARTBEAT_OK: ``ok-token`` event, silent, entry marked suppressed, updatedAt back."""
    session, _ = session_ensure(key="agent:main:main", agent_id="main")
    before = Session.objects.get(pk=session.pk).updated_at
    clock.shift(timedelta(minutes=3))
    run = _heartbeat_reply("HEARTBEAT_OK")
    assert Session.objects.get(pk=session.pk).updated_at == before
    event = heartbeat_last()
    assert (event["status"], event["silent"], event["runId"]) == ("ok-token", True, run.run_id)
    entry = TranscriptEntry.objects.get(run_id=run.run_id)
    assert entry.provenance["heartbeat"] == {"status": "ok-token", "suppressed": True}
    assert HeartbeatState.objects.get(agent_id="main").last_status == "ok-token"


def test_heartbeat_ack_max_chars_is_configurable(gateway_config, clock):
    """A short remainder beyond ackMaxChars is an alert, not an ack."""
    gateway_config({"agents": {"defaults": {"heartbeat": {"every": "30m", "ackMaxChars": 5, "target": "last"}}}})
    _heartbeat_reply("HEARTBEAT_OK disk at 91%")
    assert heartbeat_last()["status"] == "sent"


def test_heartbeat_duplicate_alert_is_suppressed_for_24_hours(gateway_config, clock):
    """The same alert within 24 h is ``skipped/duplicate``; a day later it is sent again."""
    gateway_config({"agents": {"defaults": {"heartbeat": {"every": "30m", "target": "last"}}}})
    _heartbeat_reply("Disk almost full on db-1.")
    assert heartbeat_last()["status"] == "sent"
    clock.shift(timedelta(hours=2))
    run = _heartbeat_reply("Disk almost full on db-1.")
    assert (heartbeat_last()["status"], heartbeat_last()["reason"]) == ("skipped", "duplicate")
    assert TranscriptEntry.objects.get(run_id=run.run_id).provenance["heartbeat"]["suppressed"] is True
    _heartbeat_reply("Another thing broke.")
    assert heartbeat_last()["status"] == "sent"
    clock.shift(timedelta(hours=25))
    _heartbeat_reply("Another thing broke.")
    assert heartbeat_last()["status"] == "sent"


def test_heartbeat_alert_without_target_is_not_sent(gateway_config, clock):
    """target none (the default): an alert stays in the session, status ``no-target``."""
    _heartbeat_reply("Something needs you.")
    event = heartbeat_last()
    assert (event["status"], event["reason"], event["preview"]) == ("skipped", "no-target", "Something needs you.")


def test_heartbeat_failed_run_is_a_failed_event(gateway_config, clock):
    wake(mode="now", text="x", session_key="agent:main:main")
    finish_run(heartbeat_runs().get(), status=Run.Status.ERROR, error={"code": "UNAVAILABLE", "message": "model down"})
    assert (heartbeat_last()["status"], heartbeat_last()["reason"]) == ("failed", "model down")

"""Wake target resolution (spec-a §3.3, §4.5) including the OpenClaw PR #78687 cases:
the system event and the heartbeat wake always land on the same agent and session."""

from __future__ import annotations

import pytest

from cron_app.exceptions import WakeTargetError
from cron_app.services import wake
from sessions_app.models import Run, Session, SystemEvent

pytestmark = pytest.mark.django_db

MULTI = {"agents": {"list": [{"id": "primary", "default": True}, {"id": "ops"}]}}
SINGLE = {}


def events():
    return list(SystemEvent.objects.values_list("agent_id", "session_key", "text"))


def heartbeat_runs():
    return list(Run.objects.filter(kind="heartbeat").values_list("agent_id", "session_key"))


@pytest.mark.parametrize(
    ("config", "params", "event_target", "run_target"),
    [
        # No key: the default agent's main session; now wakes it (untargeted: every scheduled agent).
        (SINGLE, {"mode": "now"}, ("main", "agent:main:main"), [("main", "agent:main:main")]),
        (SINGLE, {"mode": "next-heartbeat"}, ("main", "agent:main:main"), []),
        # A key: the documented exception, next-heartbeat wakes that session at once.
        (SINGLE, {"mode": "next-heartbeat", "sessionKey": "agent:main:main"}, ("main", "agent:main:main"),
         [("main", "agent:main:main")]),
        (SINGLE, {"mode": "now", "sessionKey": "custom-key"}, ("main", "agent:main:custom-key"),
         [("main", "agent:main:custom-key")]),
        (SINGLE, {"mode": "now", "sessionKey": "  "}, ("main", "agent:main:main"), [("main", "agent:main:main")]),
        (SINGLE, {"mode": "next-heartbeat", "sessionKey": " \t"}, ("main", "agent:main:main"), []),
        (SINGLE, {"mode": "now", "agentId": "main"}, ("main", "agent:main:main"), [("main", "agent:main:main")]),
        # PR #78687: a non-default agent's key lands in that agent on both sides.
        (MULTI, {"mode": "now", "sessionKey": "agent:ops:cron:nightly:run:abc-123"},
         ("ops", "agent:ops:cron:nightly:run:abc-123"), [("ops", "agent:ops:cron:nightly:run:abc-123")]),
        (MULTI, {"mode": "next-heartbeat", "sessionKey": "agent:ops:cron:nightly:run:abc-123"},
         ("ops", "agent:ops:cron:nightly:run:abc-123"), [("ops", "agent:ops:cron:nightly:run:abc-123")]),
        # Relative keys use the configured default agent, never a hard-coded "main".
        (MULTI, {"mode": "now", "sessionKey": "custom-key"}, ("primary", "agent:primary:custom-key"),
         [("primary", "agent:primary:custom-key")]),
        (MULTI, {"mode": "now", "sessionKey": "main"}, ("primary", "agent:primary:main"),
         [("primary", "agent:primary:main")]),
        # An unconfigured agent's key falls back to the default agent's main session (the rule).
        (MULTI, {"mode": "now", "sessionKey": "agent:ghost:main"}, ("primary", "agent:primary:main"),
         [("primary", "agent:primary:main")]),
        (MULTI, {"mode": "now", "sessionKey": "agent:ghost:work"}, ("primary", "agent:primary:main"),
         [("primary", "agent:primary:main")]),
        # An explicit agentId without a key: that agent's main session; unknown → default agent.
        (MULTI, {"mode": "now", "agentId": "ops"}, ("ops", "agent:ops:main"), [("ops", "agent:ops:main")]),
        (MULTI, {"mode": "now", "agentId": "ghost"}, ("primary", "agent:primary:main"),
         [("primary", "agent:primary:main")]),
        (MULTI, {"mode": "now", "agentId": "ops", "sessionKey": "work"}, ("ops", "agent:ops:work"),
         [("ops", "agent:ops:work")]),
        # session.scope = global: the event and the wake use the global session.
        ({"session": {"scope": "global"}}, {"mode": "now", "sessionKey": "agent:main:main"}, ("main", "global"),
         [("main", "global")]),
    ],
)  # fmt: skip
def test_wake_resolves_event_and_heartbeat_to_the_same_target(gateway_config, config, params, event_target, run_target):
    """The event lands on the resolved session; the heartbeat run (if any) targets the same one."""
    gateway_config(config)
    assert wake(text="probe", **_kwargs(params)) == {"ok": True}
    assert events() == [(*event_target, "probe")]
    assert heartbeat_runs() == run_target


def _kwargs(params):
    return {"mode": params["mode"], "session_key": params.get("sessionKey"), "agent_id": params.get("agentId")}


def test_wake_multi_agent_foreign_key_never_reroutes_to_default(gateway_config):
    """PR #78687 regression: before the fix the event went to primary's main session while
    the wake targeted ops; here both rows name ops and its session."""
    gateway_config(MULTI)
    wake(mode="now", text="nightly done", session_key="agent:ops:cron:nightly:run:abc-123")
    event = SystemEvent.objects.get()
    run = Run.objects.get(kind="heartbeat")
    assert (event.agent_id, event.session_key) == (run.agent_id, run.session_key)
    assert not SystemEvent.objects.filter(session_key="agent:primary:main").exists()
    assert Session.objects.get(key=run.session_key).agent_id == "ops"


def test_wake_refuses_a_subagent_key(gateway_config):
    """A subagent session is never a wake target; nothing is queued."""
    with pytest.raises(WakeTargetError, match="wake sessionKey cannot target a subagent session"):
        wake(mode="now", text="x", session_key="agent:main:subagent:abc")
    assert not SystemEvent.objects.exists() and not Run.objects.exists()


def test_wake_refuses_an_agent_that_contradicts_the_key(gateway_config):
    """agentId ≠ the key's agent → INVALID_REQUEST with OpenClaw's message; nothing queued."""
    gateway_config(MULTI)
    with pytest.raises(WakeTargetError) as caught:
        wake(mode="now", text="x", session_key="agent:primary:main", agent_id="ops")
    assert caught.value.code == "INVALID_REQUEST"
    assert caught.value.message == (
        "Multiple agents are configured, but session agent resolution has no explicit owner. "
        'The agent-scoped session key belongs to "primary", not "ops".'
    )
    assert not SystemEvent.objects.exists()


def test_wake_with_blank_text_is_not_ok():
    """Whitespace-only text: ``{"ok": false}`` and nothing queued (OpenClaw's cron.wake)."""
    assert wake(mode="now", text="   ") == {"ok": False}
    assert not SystemEvent.objects.exists() and not Run.objects.exists()


def test_wake_next_heartbeat_event_rides_the_next_scheduled_heartbeat(gateway_config):
    """next-heartbeat without a key only queues; the due heartbeat then runs on that session."""
    import time_machine
    from django.utils import timezone

    from cron_app.models import HeartbeatState
    from cron_app.services import heartbeat_tick

    gateway_config({"agents": {"defaults": {"heartbeat": {"every": "30m"}}}})
    with time_machine.travel(timezone.now(), tick=False) as clock:
        heartbeat_tick()
        wake(mode="next-heartbeat", text="later")
        assert not Run.objects.exists()
        clock.move_to(HeartbeatState.objects.get(agent_id="main").next_due_at)
        heartbeat_tick()
    run = Run.objects.get()
    assert (run.kind, run.session_key, run.input["intent"]) == ("heartbeat", "agent:main:main", "scheduled")
    assert SystemEvent.objects.pending().get().session_key == run.session_key

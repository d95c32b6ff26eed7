"""Announce order and the requester's queue modes (spec-b §3.7), in process: direct first
for completions the user must hear about, queue/steer first for the others; the announce
queue's debounce, collect batch, cap and drop policies; nothing dropped silently."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_app.models import Delivery, Run, Session, SubagentRun, SystemEvent
from sessions_app.services.announce_queue import BATCH_TITLE
from sessions_app.services.inbox import inbox_drain
from sessions_app.services.sessions import session_ensure
from sessions_app.services.subagents import subagent_spawn
from sessions_app.tests.test_announce import announces, finish

pytestmark = pytest.mark.django_db
MAIN = "agent:main:main"


def busy_requester(**queue) -> Run:
    """The requester session with a running turn and the given ``queue_*`` overrides."""
    session, _ = session_ensure(key=MAIN)
    Session.objects.filter(pk=session.pk).update(**{f"queue_{k}": v for k, v in queue.items()})
    return Run.objects.create(run_id="busy", session=session, session_key=MAIN, agent_id="main", status="running",
                              input={"message": "working"}, started_at=timezone.now())  # fmt: skip


def child_done(label: str, text: str, *, expects: bool = False) -> SubagentRun:
    result = subagent_spawn(requester_session_key=MAIN, requester_run_id=None, task=f"task {label}", label=label,
                            expects_completion_message=expects)  # fmt: skip
    assert result["status"] == "accepted", result
    finish(result["runId"], text)
    return SubagentRun.objects.get(run_id=result["runId"])


def path(delivery: Delivery) -> dict:
    return delivery.payload["announcePath"]


def queue_runs() -> list[Run]:
    return list(Run.objects.filter(input__queueMode="announce").order_by("created_at", "id"))


def test_a_completion_the_user_must_hear_about_goes_direct_even_when_the_queue_would_hold_it():
    busy_requester(mode="collect")
    row = child_done("spawned", "42 widgets", expects=True)
    [delivery] = announces()
    assert path(delivery) == {"path": "direct", "phases": ["direct-primary"]}
    assert (row.announce_path, delivery.target_run_id) == ("direct", None)
    assert queue_runs() == []
    # the busy requester's live turn reads it at its next step
    [message] = inbox_drain(session=Session.objects.get(key=MAIN), run=Run.objects.get(run_id="busy"))
    assert "42 widgets" in message["content"]


def test_an_ordinary_completion_to_an_idle_requester_goes_direct_after_queue_steer_placed_nothing(
    django_capture_on_commit_callbacks,
):
    session_ensure(key=MAIN)
    with django_capture_on_commit_callbacks(execute=True):  # the hand-over runs after commit
        row = child_done("idle", "done")
    [delivery] = announces()
    assert path(delivery) == {"path": "direct", "phases": ["steer-primary", "direct-primary"]}
    assert row.announce_path == "direct"
    assert Run.objects.filter(session_key=MAIN, kind="announce", status="queued").count() == 1  # its own turn


def test_steer_mode_binds_an_ordinary_completion_to_the_active_run():
    busy_requester(mode="steer")
    child_done("steered", "into the live run")
    [delivery] = announces()
    assert (path(delivery)["path"], delivery.target_run_id) == ("steered", "busy")


def test_collect_mode_queues_completions_into_one_debounced_batch_the_active_run_does_not_read():
    busy = busy_requester(mode="collect", debounce_ms=1500)
    child_done("a", "alpha result")
    before = timezone.now()
    child_done("b", "beta result")
    [queued] = queue_runs()
    assert [d.target_run_id for d in announces()] == [queued.run_id, queued.run_id]
    assert {path(d)["path"] for d in announces()} == {"queued"}
    assert queued.not_before >= before + timedelta(milliseconds=1400)  # debounce from the last enqueue
    session = Session.objects.get(key=MAIN)
    assert inbox_drain(session=session, run=busy) == []  # not steered into the busy turn
    [message] = inbox_drain(session=session, run=queued)
    text = message["content"]
    assert text.startswith(BATCH_TITLE + "\n\n---\n\n")
    assert text.index("alpha result") < text.index("beta result")
    assert {d.state for d in announces()} == {"consumed"}


def test_followup_mode_runs_one_turn_per_completion_and_summarizes_what_overflowed():
    busy_requester(mode="followup", cap=2, drop="summarize")
    first = child_done("first", "one")
    child_done("second", "two")
    child_done("third", "three")
    first.refresh_from_db()
    assert (first.announce_state, first.last_announce_error) == (
        "dropped", "dropped: announce queue full (cap 2, drop summarize)")
    dropped = Delivery.objects.get(delivery_id=first.announce_delivery_id)
    assert (dropped.state, dropped.sender_notified) == ("failed", True)
    runs = Run.objects.filter(input__queueMode="announce").order_by("created_at", "id")
    assert [r.status for r in runs] == ["aborted", "queued", "queued"]
    second_run = runs[1]
    [message] = inbox_drain(session=Session.objects.get(key=MAIN), run=second_run)
    assert message["content"].startswith("[1 queued announce(s) dropped while agent was busy]\n- first: completed")
    assert "two" in message["content"] and "three" not in message["content"]


@pytest.mark.parametrize("drop, given_up", [("new", "third"), ("old", "first")])
def test_drop_new_or_old_gives_the_dropped_announce_up_with_a_visible_notice(drop, given_up):
    busy_requester(mode="followup", cap=2, drop=drop)
    rows = {label: child_done(label, label) for label in ("first", "second", "third")}
    for row in rows.values():
        row.refresh_from_db()
    assert {label: row.announce_state for label, row in rows.items()} == {
        label: "failed" if label == given_up else "announced" for label in rows}
    [notice] = SystemEvent.objects.filter(session_key=MAIN)
    assert notice.text.startswith(f"⚠️ Sub-agent result could not be delivered: {given_up}")
    assert "dropped: announce queue full (cap 2, drop " + drop + ")" in notice.text
    assert Delivery.objects.filter(kind="announce", state__in=("pending", "delivered")).count() == 2


def test_a_failed_direct_attempt_falls_back_to_queue_steer_when_the_requester_is_busy(monkeypatch):
    from openclaw_site.errors import UnavailableError
    from sessions_app.services import deliveries

    real, calls = deliveries.delivery_enqueue, []

    def direct_fails_once(**kwargs):
        calls.append(kwargs["target_run_id"])
        if len(calls) == 1:
            raise UnavailableError("gateway not connected")
        return real(**kwargs)

    monkeypatch.setattr(deliveries, "delivery_enqueue", direct_fails_once)
    busy_requester(mode="steer")
    row = child_done("fallback", "made it", expects=True)
    [delivery] = announces()
    assert path(delivery) == {"path": "steered", "phases": ["direct-primary", "steer-fallback"]}
    assert (calls, delivery.target_run_id, row.announce_state) == ([None, "busy"], "busy", "announced")

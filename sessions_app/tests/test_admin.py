"""The operator console: changelists, filters and search render, and every action changes
rows through its service (errors reported at level ERROR with their code)."""

from __future__ import annotations

import pytest
from django.contrib import messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from acp_app.models import AcpSession
from sessions_app.models import Delivery, Run, Session, SessionEvent, SubagentRun, SystemEvent, TranscriptEntry
from sessions_app.services.deliveries import delivery_enqueue, delivery_mark_failed
from sessions_app.services.runs import run_enqueue
from sessions_app.services.sessions import chat_inject, session_create, session_ensure

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def state_dir(settings, tmp_path):
    settings.OPENCLAW_STATE_DIR = tmp_path


@pytest.fixture
def admin_client() -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456")
    client = Client()
    client.force_login(user)
    return client


def changelist(model) -> str:
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/"


def run_action(client: Client, model, action: str, rows, **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [row.pk for row in rows], **extra}
    return client.post(changelist(model), data)


def reported(response) -> list[tuple[int, str]]:
    return [(m.level, str(m)) for m in get_messages(response.wsgi_request)]


def errors(response) -> list[str]:
    return [text for level, text in reported(response) if level == messages.ERROR]


# --- sessions -------------------------------------------------------------------------


def test_admin_session_changelist_filters_and_search(admin_client):
    alpha = session_create(key=None, agent_id=None, label="alpha")
    session_create(key=None, agent_id=None, label="beta")
    url = changelist(Session)
    for query in ("", "?agent_id=main", f"?kind={alpha.kind}", "?state=idle", "?delegated=no", "?q=alpha"):
        response = admin_client.get(url + query)
        assert response.status_code == 200, query
        assert alpha.key in response.content.decode(), query
    searched = admin_client.get(url + "?q=alpha").content.decode()
    assert "beta" not in searched


def test_admin_session_delegated_filter_lists_hub_workers_only(admin_client):
    worker = session_create(key="agent:main:acp:worker-1", agent_id=None, label="worker")
    plain = session_create(key=None, agent_id=None, label="plain")
    AcpSession.objects.create(session=worker, harness_agent="codex", owner_session_key="agent:main:main")
    page = admin_client.get(changelist(Session) + "?delegated=yes").content.decode()
    assert worker.key in page
    assert plain.key not in page


def test_admin_session_page_shows_the_current_transcript_read_only(admin_client):
    session = session_create(key=None, agent_id=None)
    chat_inject(key=session.key, message="before reset")
    run_action(admin_client, Session, "reset_sessions", [session])
    chat_inject(key=session.key, message="after reset")
    response = admin_client.get(f"{changelist(Session)}{session.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "after reset" in page
    assert "before reset" not in page
    assert 'name="_save"' not in page


def test_admin_session_cannot_be_added_by_form(admin_client):
    assert admin_client.get(changelist(Session) + "add/").status_code == 403


def test_admin_reset_action_rotates_the_session_id(admin_client):
    session = session_create(key=None, agent_id=None, label="keep-me")
    old_id = session.session_id
    response = run_action(admin_client, Session, "reset_sessions", [session])
    assert response.status_code == 302
    session.refresh_from_db()
    assert session.session_id != old_id
    assert session.label == "keep-me"
    assert (messages.SUCCESS, "Reset 1 row(s).") in reported(response)


def test_admin_delete_action_removes_rows_and_refuses_the_main_session(admin_client):
    doomed = session_create(key=None, agent_id=None)
    main, _ = session_ensure(key="agent:main:main")
    response = run_action(admin_client, Session, "delete_sessions", [doomed, main])
    assert not Session.objects.filter(pk=doomed.pk).exists()
    assert Session.objects.filter(pk=main.pk).exists()
    assert errors(response) == [
        "agent:main:main: INVALID_REQUEST/MAIN_SESSION_DELETE: Cannot delete the main session (agent:main:main)."
    ]


def test_admin_wake_action_asks_for_text_then_queues_a_system_event(admin_client):
    pytest.importorskip("cron_app.services.wake")
    session = session_create(key="agent:main:ops-room", agent_id=None)
    form = run_action(admin_client, Session, "wake_sessions", [session])
    assert form.status_code == 200
    assert 'name="text"' in form.content.decode()
    assert not SystemEvent.objects.exists()
    response = run_action(admin_client, Session, "wake_sessions", [session], apply="Wake", text="disk almost full")
    assert response.status_code == 302
    event = SystemEvent.objects.get()
    assert (event.session_key, event.text) == (session.key, "disk almost full")


def test_admin_wake_action_reports_a_refused_target(admin_client):
    pytest.importorskip("cron_app.services.wake")
    child = session_create(key="agent:main:subagent:abc", agent_id=None)
    response = run_action(admin_client, Session, "wake_sessions", [child], apply="Wake", text="hi")
    assert len(errors(response)) == 1
    assert "wake sessionKey cannot target a subagent session" in errors(response)[0]
    assert not SystemEvent.objects.exists()


# --- transcripts, events ----------------------------------------------------------------


def test_admin_transcript_changelist_filters_by_role(admin_client):
    session = session_create(key=None, agent_id=None)
    chat_inject(key=session.key, message="an injected note")
    for query in ("", "?role=assistant", "?q=" + session.key):
        response = admin_client.get(changelist(TranscriptEntry) + query)
        assert response.status_code == 200
        assert "an injected note" in response.content.decode()
    assert "an injected note" not in admin_client.get(changelist(TranscriptEntry) + "?role=user").content.decode()
    entry = TranscriptEntry.objects.get()
    assert admin_client.get(f"{changelist(TranscriptEntry)}{entry.pk}/change/").status_code == 200


def test_admin_event_changelists_render(admin_client):
    session = session_create(key=None, agent_id=None)
    SystemEvent.objects.create(session_key=session.key, agent_id="main", text="System: ping")
    chat_inject(key=session.key, message="numbered")  # publishes a per-session event
    assert SessionEvent.objects.filter(session_key=session.key).exists()
    assert "System: ping" in admin_client.get(changelist(SystemEvent) + "?consumed_at__isnull=True").content.decode()
    response = admin_client.get(changelist(SessionEvent) + "?q=" + session.key)
    assert response.status_code == 200
    assert session.key in response.content.decode()


# --- runs -----------------------------------------------------------------------------


def test_admin_run_changelist_shows_status_duration_and_tokens(admin_client):
    session = session_create(key=None, agent_id=None)
    run, _ = run_enqueue(session=session, agent_id="main", input={"message": "hi"})
    started = timezone.now()
    Run.objects.filter(pk=run.pk).update(
        status=Run.Status.ERROR, started_at=started, ended_at=started + timezone.timedelta(seconds=2),
        usage={"totalTokens": 1234}, error={"code": "UNAVAILABLE", "message": "model down"},
    )  # fmt: skip
    page = admin_client.get(changelist(Run) + "?status=error").content.decode()
    assert run.run_id in page
    assert "2.0 s" in page and "1234" in page and "UNAVAILABLE: model down" in page


def test_admin_abort_action_ends_a_queued_run_and_reports_an_ended_one(admin_client):
    session = session_create(key=None, agent_id=None)
    queued, _ = run_enqueue(session=session, agent_id="main", input={"message": "hi"})
    done, _ = run_enqueue(session=session, agent_id="main", input={"message": "old"})
    Run.objects.filter(pk=done.pk).update(status=Run.Status.OK)
    response = run_action(admin_client, Run, "abort_runs", [queued, done])
    queued.refresh_from_db()
    assert queued.status == Run.Status.ABORTED
    assert Run.objects.get(pk=done.pk).status == Run.Status.OK
    assert len(errors(response)) == 1
    assert "INVALID_REQUEST/RUN_NOT_ACTIVE" in errors(response)[0]


def test_admin_abort_action_flags_a_running_run(admin_client):
    session = session_create(key=None, agent_id=None)
    run, _ = run_enqueue(session=session, agent_id="main", input={"message": "hi"})
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING)
    run_action(admin_client, Run, "abort_runs", [run])
    run.refresh_from_db()
    assert (run.status, run.abort_requested) == (Run.Status.RUNNING, True)


# --- deliveries -----------------------------------------------------------------------


def _delivery(key: str) -> Delivery:
    delivery, _ = delivery_enqueue(
        kind=Delivery.Kind.SEND, source_session_key="agent:main:main", source_run_id=None,
        target_session_key="agent:main:other", payload={"text": "hello"}, idempotency_key=key,
    )  # fmt: skip
    return delivery


def test_admin_delivery_changelist_filters_by_state(admin_client):
    delivery = _delivery("d-list")
    for query in ("", "?state=pending", "?q=agent:main:other"):
        assert delivery.delivery_id in admin_client.get(changelist(Delivery) + query).content.decode()
    assert delivery.delivery_id not in admin_client.get(changelist(Delivery) + "?state=failed").content.decode()


def test_admin_retry_action_requeues_a_failed_delivery_only(admin_client):
    failed = delivery_mark_failed(delivery=_delivery("d-failed"), reason="target gone")
    Delivery.objects.filter(pk=failed.pk).update(attempts=5)
    pending = _delivery("d-pending")
    response = run_action(admin_client, Delivery, "retry_deliveries", [failed, pending])
    failed.refresh_from_db()
    assert (failed.state, failed.attempts) == (Delivery.State.PENDING, 0)
    assert len(errors(response)) == 1
    assert "DELIVERY_NOT_RETRYABLE" in errors(response)[0]


# --- sub-agents -----------------------------------------------------------------------


def _subagent(requester: Session, child_key: str) -> SubagentRun:
    session_ensure(key=child_key)
    return SubagentRun.objects.create(
        run_id=f"run-{child_key[-4:]}", child_session_key=child_key, requester_session_key=requester.key,
        task="count the files", label="counter", agent_id="main", started_at=timezone.now(),
    )  # fmt: skip


def test_admin_subagent_changelist_filters(admin_client):
    requester, _ = session_ensure(key="agent:main:main")
    row = _subagent(requester, "agent:main:subagent:aaaa")
    for query in ("", "?status=running", "?q=counter"):
        assert row.child_session_key in admin_client.get(changelist(SubagentRun) + query).content.decode()


def test_admin_kill_action_kills_a_running_subagent(admin_client):
    pytest.importorskip("sessions_app.services.subagent_control")
    requester, _ = session_ensure(key="agent:main:main")
    row = _subagent(requester, "agent:main:subagent:bbbb")
    response = run_action(admin_client, SubagentRun, "kill_subagents", [row])
    row.refresh_from_db()
    assert row.status == SubagentRun.Status.KILLED
    assert [level for level, _ in reported(response)] == [messages.SUCCESS]
    admin_client.get(changelist(SubagentRun))  # shows (and so clears) the messages
    again = run_action(admin_client, SubagentRun, "kill_subagents", [row])
    assert [level for level, _ in reported(again)] == [messages.WARNING]


def test_admin_index_and_every_changelist_render_empty(admin_client):
    assert admin_client.get("/admin/").status_code == 200
    for model in (Session, TranscriptEntry, Run, Delivery, SystemEvent, SubagentRun, SessionEvent):
        assert admin_client.get(changelist(model)).status_code == 200, model

"""The operator dashboard: the counts selector and the staff-only page."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from acp_app.models import AcpSession
from cron_app.models import HeartbeatState
from sessions_app.dashboard import dashboard_counts
from sessions_app.models import Delivery, Run, Session

pytestmark = pytest.mark.django_db


def session(key: str) -> Session:
    from sessions_app.services.sessions import session_ensure

    return session_ensure(key=key, agent_id="main")[0]


def delivery(n: int, state: str) -> Delivery:
    return Delivery.objects.create(idempotency_key=f"k{n}", kind=Delivery.Kind.SEND,
                                   target_session_key="agent:main:main", state=state)


def test_dashboard_counts_each_kind_of_row_and_links_its_changelist():
    """Running/queued runs, pending/failed deliveries, open owned workers and due heartbeats
    are counted; terminal runs, consumed deliveries, closed or unowned workers and heartbeats
    due later are not. Each count links the changelist filtered the same way."""
    main = session("agent:main:main")
    for status in ("running", "queued", "queued", "ok", "aborted"):
        Run.objects.create(session=main, session_key=main.key, agent_id="main", status=status)
    for n, state in enumerate(("pending", "failed", "failed", "failed", "consumed")):
        delivery(n, state)
    workers = [(main.key, "idle"), (main.key, "running"), (main.key, "closed"), (None, "idle")]
    for n, (owner, state) in enumerate(workers):
        AcpSession.objects.create(session=session(f"agent:main:acp:{n}"), harness_agent="codex",
                                  owner_session_key=owner, state=state)
    now = timezone.now()
    HeartbeatState.objects.create(agent_id="main", next_due_at=now - timedelta(minutes=1))
    HeartbeatState.objects.create(agent_id="ops", next_due_at=now + timedelta(minutes=5))

    counts = {c.key: c for c in dashboard_counts(now=now)}

    assert {k: c.count for k, c in counts.items()} == {
        "runs-active": 1, "runs-queued": 2, "deliveries-pending": 1, "deliveries-failed": 3,
        "delegates-live": 2, "heartbeats-due": 1,
    }  # fmt: skip
    assert counts["runs-active"].url == "/admin/sessions_app/run/?status__exact=running"
    assert counts["deliveries-failed"].url == "/admin/sessions_app/delivery/?state__exact=failed"
    assert counts["delegates-live"].url == "/admin/acp_app/delegate/?status=open"
    assert counts["heartbeats-due"].url.startswith("/admin/cron_app/heartbeatstate/?next_due_at__lte=")
    assert [c.key for c in counts.values() if c.alert] == ["deliveries-failed"]


def test_dashboard_page_is_for_staff_and_shows_the_counts(client, django_user_model):
    """Anonymous visitors go to the login page; staff see every count with its link."""
    assert client.get("/admin/dashboard/").status_code == 302
    client.force_login(django_user_model.objects.create_superuser("op", "op@example.com", "pw-123456"))
    delivery(1, "failed")
    page = client.get("/admin/dashboard/").content.decode()
    assert 'data-testid="count-deliveries-failed">1<' in page
    assert 'href="/admin/sessions_app/delivery/?state__exact=failed"' in page
    index = client.get("/admin/").content.decode()
    assert 'data-testid="count-deliveries-failed">1<' in index and 'href="/admin/dashboard/"' in index

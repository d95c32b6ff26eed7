"""The operator dashboard's counts (a selector: reads only).

Each count names the admin changelist (and its filter) that lists the same rows, so the
dashboard and the page it links to never disagree. Links are resolved only for models
the admin has registered (a feature that is not built yet shows its count unlinked).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from .models import Delivery, Run


@dataclass(frozen=True)
class DashboardCount:
    key: str
    title: str
    count: int
    url: str | None
    help: str
    alert: bool = False  # a non-zero count that needs an operator


def _changelist(model, query: dict[str, str] | None = None) -> str | None:
    if not admin.site.is_registered(model):
        return None
    opts = model._meta
    try:
        url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    except NoReverseMatch:
        return None
    return f"{url}?{urlencode(query)}" if query else url


def _runs(status: str) -> int:
    return Run.objects.filter(status=status).count()


def _deliveries(state: str) -> int:
    return Delivery.objects.filter(state=state).count()


def _live_delegates() -> tuple[int, str | None]:
    """Workers with an owner that are not closed (the Delegates page's default view)."""
    from acp_app.models import AcpSession, Delegate

    live = Q(owner_session_key__isnull=False) & ~Q(owner_session_key="") & ~Q(state=AcpSession.State.CLOSED)
    count = AcpSession.objects.filter(live).count()
    url = _changelist(Delegate, {"status": "open"})
    if url is None:
        from .models import Session

        url = _changelist(Session, {"delegated": "yes"})
    return count, url


def _heartbeats_due(now: datetime) -> tuple[int, str | None]:
    from cron_app.models import HeartbeatState

    count = HeartbeatState.objects.filter(next_due_at__lte=now).count()
    return count, _changelist(HeartbeatState, {"next_due_at__lte": now.isoformat()})


def dashboard_counts(*, now: datetime | None = None) -> list[DashboardCount]:
    """Active and queued runs, pending and failed deliveries, live delegates, heartbeats due."""
    now = now or timezone.now()
    delegates, delegates_url = _live_delegates()
    heartbeats, heartbeats_url = _heartbeats_due(now)
    failed = _deliveries(Delivery.State.FAILED)
    return [
        DashboardCount("runs-active", "Active runs", _runs(Run.Status.RUNNING),
                       _changelist(Run, {"status__exact": Run.Status.RUNNING}), "turns executing now"),
        DashboardCount("runs-queued", "Queued runs", _runs(Run.Status.QUEUED),
                       _changelist(Run, {"status__exact": Run.Status.QUEUED}), "waiting for a session lane"),
        DashboardCount("deliveries-pending", "Pending deliveries", _deliveries(Delivery.State.PENDING),
                       _changelist(Delivery, {"state__exact": Delivery.State.PENDING}), "not yet consumed by a turn"),
        DashboardCount("deliveries-failed", "Failed deliveries", failed,
                       _changelist(Delivery, {"state__exact": Delivery.State.FAILED}), "gave up; retry from the list",
                       alert=failed > 0),
        DashboardCount("delegates-live", "Live delegates", delegates, delegates_url,
                       "delegated ACP workers not closed"),
        DashboardCount("heartbeats-due", "Heartbeats due", heartbeats, heartbeats_url,
                       "next heartbeat time has passed"),
    ]  # fmt: skip

"""Reads of cron jobs, the run log and heartbeat state, shaped as spec-a §5.5 pages."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Count, F, Max, Q, QuerySet

from .models import CronJob, CronRun, HeartbeatState
from .serializers import cron_job_row, cron_run_row, ms

MAX_PAGE = 200
_JOB_SORTS = {"nextRunAtMs": "next_run_at", "updatedAtMs": "updated_at", "name": "name"}


def _page(rows: list[dict], *, total: int, offset: int, limit: int, key: str) -> dict[str, Any]:
    has_more = offset + len(rows) < total
    return {key: rows, "total": total, "offset": offset, "limit": limit, "hasMore": has_more,
            "nextOffset": offset + len(rows) if has_more else None}  # fmt: skip


def _order(field: str, descending: bool):
    expression = F(field)
    return expression.desc(nulls_last=True) if descending else expression.asc(nulls_last=True)


def cron_job_list(
    *, include_disabled: bool = False, enabled: str | None = None, query: str | None = None,
    sort_by: str = "nextRunAtMs", sort_dir: str = "asc", limit: int = MAX_PAGE, offset: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """A page of jobs; disabled ones only with ``includeDisabled`` or ``enabled``."""
    jobs: QuerySet[CronJob] = CronJob.objects.all()
    state = enabled or ("all" if include_disabled else "enabled")
    if state in ("enabled", "disabled"):
        jobs = jobs.filter(enabled=state == "enabled")
    if query and query.strip():
        text = query.strip()
        jobs = jobs.filter(Q(name__icontains=text) | Q(description__icontains=text) | Q(job_id__icontains=text))
    field = _JOB_SORTS.get(sort_by, "next_run_at")
    jobs = jobs.order_by(_order(field, sort_dir == "desc"), "id")
    limit = max(1, min(limit, MAX_PAGE))
    rows = [cron_job_row(job) for job in jobs[offset : offset + limit]]
    page = _page(rows, total=jobs.count(), offset=offset, limit=limit, key="jobs")
    # The openclaw CLI rejects a page without it and checks every page of a listing has the same.
    return {**page, "snapshotRevision": _jobs_revision()}


def _jobs_revision() -> str:
    """Changes whenever a job is added, removed or updated."""
    stats = CronJob.objects.aggregate(n=Count("id"), last=Max("id"), changed=Max("updated_at"))
    return f"jobs:{stats['n']}:{stats['last'] or 0}:{ms(stats['changed']) if stats['changed'] else 0}"


def cron_status(*, enabled: bool) -> dict[str, Any]:
    upcoming = CronJob.objects.filter(enabled=True, next_run_at__isnull=False).order_by("next_run_at").first()
    return {
        "enabled": enabled, "storePath": f"database:{connection.vendor}", "jobs": CronJob.objects.count(),
        "nextWakeAtMs": ms(upcoming.next_run_at) if upcoming and enabled else None,
    }  # fmt: skip


def cron_run_list(
    *, job_id: str | None = None, statuses: list[str] | None = None, delivery_statuses: list[str] | None = None,
    query: str | None = None, sort_dir: str = "desc", limit: int = 50, offset: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """A page of run-log entries of one job (or every job when ``job_id`` is None)."""
    runs: QuerySet[CronRun] = CronRun.objects.select_related("job")
    if job_id is not None:
        runs = runs.filter(job_uid=job_id)
    if statuses:
        runs = runs.filter(status__in=statuses)
    if delivery_statuses:
        runs = runs.filter(delivery_status__in=delivery_statuses)
    if query and query.strip():
        text = query.strip()
        runs = runs.filter(Q(summary__icontains=text) | Q(error__icontains=text) | Q(job_name__icontains=text))
    runs = runs.order_by(_order("scheduled_for", sort_dir != "asc"), "-id" if sort_dir != "asc" else "id")
    limit = max(1, min(limit, MAX_PAGE))
    rows = [cron_run_row(run) for run in runs[offset : offset + limit]]
    return _page(rows, total=runs.count(), offset=offset, limit=limit, key="entries")


def heartbeat_last() -> dict[str, Any] | None:
    """The latest ``heartbeat`` event of any agent (``last-heartbeat``), or None."""
    state = HeartbeatState.objects.filter(last_event_at__isnull=False).order_by("-last_event_at").first()
    return state.last_event if state else None


def heartbeat_states() -> QuerySet[HeartbeatState]:
    return HeartbeatState.objects.order_by("agent_id")

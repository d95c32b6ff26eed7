"""Reads of the sub-agent registry (spec-b §2.6): lineage, children, pending descendants.

A child session can have several ``SubagentRun`` rows over time (the spawn, steer
restarts, follow-ups, a descendant wake); queries that reason about a child use its
*latest* row. A row is unended while its status is ``running``; an ended row is still
*pending* until its announce/cleanup is handled.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime

from django.db.models import Q

from .keys import normalize_session_key
from .models import Run, Session, SubagentRun


def subagent_run_get(*, run_id: str) -> SubagentRun | None:
    """The registry row of a child run id, or None."""
    return SubagentRun.objects.filter(run_id=run_id).first()


def subagent_latest_for_child(*, child_session_key: str) -> SubagentRun | None:
    """The newest registry row of a child session, or None (not a registered sub-agent)."""
    return SubagentRun.objects.filter(child_session_key=child_session_key).order_by("-created_at", "-id").first()


def subagent_spawn_depth(*, session_key: str) -> int:
    """Depth of a session: its stored ``spawn_depth``, else its ``spawned_by`` chain + 1,
    else the number of ``:subagent:`` segments in its key (0 = a main/top-level session)."""
    seen: set[str] = set()
    key, hops = normalize_session_key(session_key), 0
    while key and key not in seen:
        seen.add(key)
        row = Session.objects.filter(key=key).values("spawn_depth", "spawned_by").first()
        if row and row["spawn_depth"] is not None:
            return row["spawn_depth"] + hops
        if not row or not row["spawned_by"]:
            return key.count(":subagent:") + hops
        key, hops = row["spawned_by"], hops + 1
    return hops


def _latest_per_child(rows) -> list[SubagentRun]:
    latest: dict[str, SubagentRun] = {}
    for row in rows.order_by("created_at", "id"):
        latest[row.child_session_key] = row
    return sorted(latest.values(), key=lambda r: (r.created_at, r.id))


def subagent_runs_for_requester(*, requester_session_key: str, requester_run_id: str | None = None) -> list[SubagentRun]:
    """Every row whose requester is the session, oldest first.

    With ``requester_run_id`` naming a run of that session (a registry row of it, or any
    ``Run``), only rows created inside that run's ``[start, end]`` window are returned, so
    an announce never includes findings from earlier runs.
    """
    rows = SubagentRun.objects.filter(requester_session_key=requester_session_key)
    window = _run_window(requester_session_key, requester_run_id) if requester_run_id else None
    if window is not None:
        start, end = window
        rows = rows.filter(created_at__gte=start)
        if end is not None:
            rows = rows.filter(created_at__lte=end)
    return list(rows.order_by("created_at", "id"))


def _run_window(session_key: str, run_id: str) -> tuple[datetime, datetime | None] | None:
    record = SubagentRun.objects.filter(run_id=run_id, child_session_key=session_key).first()
    if record is not None:
        return record.started_at or record.created_at, record.ended_at
    run = Run.objects.filter(run_id=run_id, session_key=session_key).first()
    if run is not None:
        return run.started_at or run.created_at, run.ended_at
    return None


def subagent_children_latest(*, requester_session_key: str, requester_run_id: str | None = None) -> list[SubagentRun]:
    """The latest row per child among the requester's rows (optionally in a run window)."""
    rows = subagent_runs_for_requester(requester_session_key=requester_session_key, requester_run_id=requester_run_id)
    latest: dict[str, SubagentRun] = {}
    for row in rows:
        latest[row.child_session_key] = row
    return list(latest.values())


def _is_pending(row: SubagentRun) -> bool:
    return row.status == SubagentRun.Status.RUNNING or not row.cleanup_handled


def subagent_count_pending_descendants(*, root_session_key: str) -> int:
    """Descendants of a session (breadth first over the latest row per child that points
    back at its parent) that are unended, or ended with their announce not handled yet."""
    pending, queue, seen = 0, deque([root_session_key]), {root_session_key}
    while queue:
        parent = queue.popleft()
        for row in _latest_children_pointing_back(parent):
            pending += _is_pending(row)
            if row.child_session_key not in seen:
                seen.add(row.child_session_key)
                queue.append(row.child_session_key)
    return pending


def _latest_children_pointing_back(parent_key: str) -> list[SubagentRun]:
    child_keys = set(
        SubagentRun.objects.filter(requester_session_key=parent_key).values_list("child_session_key", flat=True)
    )
    rows = _latest_per_child(SubagentRun.objects.filter(child_session_key__in=child_keys))
    return [row for row in rows if row.requester_session_key == parent_key]


def subagent_count_active_children(*, requester_session_key: str) -> int:
    """Children counted against ``maxChildrenPerAgent``: the latest row per child that is
    unended, or ended while it still has pending descendants."""
    count = 0
    for row in _latest_children_pointing_back(requester_session_key):
        if row.status == SubagentRun.Status.RUNNING:
            count += 1
        elif subagent_count_pending_descendants(root_session_key=row.child_session_key):
            count += 1
    return count


def subagent_requester_for_child(*, child_session_key: str) -> tuple[str, dict] | None:
    """``(requester_session_key, requester_origin)`` of a child's latest row, or None."""
    row = subagent_latest_for_child(child_session_key=child_session_key)
    return (row.requester_session_key, row.requester_origin) if row else None


def subagent_owned_by(*, child_session_key: str, requester_session_key: str) -> bool:
    """True when the child is a sub-agent the requester spawned (its latest row)."""
    row = subagent_latest_for_child(child_session_key=child_session_key)
    return row is not None and row.requester_session_key == requester_session_key


def subagent_runs_due(*, now: datetime) -> list[SubagentRun]:
    """Rows the maintenance sweep must look at: unended rows whose run has ended (or
    vanished), and ended rows whose announce is not handled and not backing off."""
    unended = SubagentRun.objects.filter(status=SubagentRun.Status.RUNNING).exclude(
        run_id__in=Run.objects.active().values("run_id")
    )
    unannounced = SubagentRun.objects.filter(cleanup_handled=False).exclude(status=SubagentRun.Status.RUNNING)
    unannounced = unannounced.filter(Q(next_announce_at__isnull=True) | Q(next_announce_at__lte=now))
    return list((unended | unannounced).distinct().order_by("ended_at", "created_at", "id"))

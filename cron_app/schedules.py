"""Pure time arithmetic of heartbeats and cron (spec-a §4.3, §4.4, §5.3); no database.

Heartbeat slots are ``k·interval + phase`` (epoch ms) with a stable per-agent phase, moved
to the first slot inside the agent's active hours. Cron slots come from the job's
schedule: a one-shot ``at`` time, ``every`` ms from an anchor, or a 5/6-field cron
expression in an IANA zone plus a deterministic per-job stagger.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from django.utils import timezone

UTC = dt_timezone.utc
TOP_OF_HOUR_STAGGER_MS = 5 * 60_000
MAX_SLOT_SCAN = 20_000


def to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=UTC)


def zone(name: str | None, *, user_timezone: str | None = None):
    """The zone of an ``activeHours.timezone``/cron ``tz``: ``user``, ``local`` or IANA.

    ``user`` is ``agents.defaults.userTimezone`` when set; unknown names fall back to the
    gateway's local zone (``settings.TIME_ZONE``).
    """
    name = (name or "").strip()
    if name in ("", "user"):
        name = (user_timezone or "").strip() or "local"
    if name == "local":
        return timezone.get_default_timezone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.get_default_timezone()


def is_valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


# --- heartbeats -------------------------------------------------------------------------


def heartbeat_phase_ms(*, agent_id: str, interval_ms: int, seed: str = "") -> int:
    """A stable offset in ``[0, interval)`` that spreads agents' heartbeats apart."""
    digest = hashlib.sha256(f"{seed}:{agent_id}".encode()).hexdigest()
    return int(digest[:12], 16) % max(interval_ms, 1)


def _clock_minutes(value: str | None) -> int | None:
    try:
        hours, minutes = (value or "").split(":")
        total = int(hours) * 60 + int(minutes)
    except ValueError:
        return None
    return total if 0 <= total <= 24 * 60 and 0 <= int(minutes) < 60 else None


def within_active_hours(active_hours: dict | None, at: datetime, *, user_timezone: str | None = None) -> bool:
    """OpenClaw's ``isWithinActiveHours``: no or invalid hours → active, ``start == end`` →
    never, ``end > start`` → ``start ≤ now < end``, else the window wraps midnight."""
    if not active_hours:
        return True
    start, end = _clock_minutes(active_hours.get("start")), _clock_minutes(active_hours.get("end"))
    if start is None or end is None:
        return True
    if start == end:
        return False
    local = at.astimezone(zone(active_hours.get("timezone"), user_timezone=user_timezone))
    now = local.hour * 60 + local.minute
    return start <= now < end if end > start else (now >= start or now < end)


def heartbeat_next_due(
    *, now: datetime, interval_ms: int, phase_ms: int, active_hours: dict | None = None,
    user_timezone: str | None = None,
) -> datetime:  # fmt: skip
    """The first phase slot after ``now`` that falls inside the active hours."""
    now_ms = to_ms(now)
    slot = ((now_ms - phase_ms) // interval_ms + 1) * interval_ms + phase_ms
    first = slot
    for _ in range(MAX_SLOT_SCAN):
        if within_active_hours(active_hours, from_ms(slot), user_timezone=user_timezone):
            return from_ms(slot)
        slot += interval_ms
    return from_ms(first)  # never active (start == end): keep ticking, the run gate skips it


# --- cron -------------------------------------------------------------------------------


def parse_at(value: str) -> datetime:
    """An ISO-8601 instant; no offset means UTC. Raises ValueError."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def cron_fields(expr: str) -> list[str]:
    return expr.split()


def is_valid_cron(expr: str) -> bool:
    fields = cron_fields(expr)
    if len(fields) not in (5, 6):
        return False
    try:
        croniter(expr, datetime(2026, 1, 1, tzinfo=UTC), second_at_beginning=len(fields) == 6)
    except (ValueError, KeyError, TypeError):
        return False
    return croniter.is_valid(expr, second_at_beginning=len(fields) == 6)


def _is_top_of_hour(expr: str) -> bool:
    fields = cron_fields(expr)
    if len(fields) == 6:
        if fields[0] != "0":
            return False
        fields = fields[1:]
    return fields[0] == "0" and fields[1].startswith("*")


def cron_stagger_ms(*, schedule: dict, job_id: str) -> int:
    """A deterministic offset below the stagger window: ``staggerMs`` when set (0 = exact),
    else up to 5 minutes for recurring top-of-hour expressions."""
    window = schedule.get("staggerMs")
    if window is None:
        window = TOP_OF_HOUR_STAGGER_MS if _is_top_of_hour(schedule["expr"]) else 0
    if not window:
        return 0
    return int(hashlib.sha256(job_id.encode()).hexdigest()[:12], 16) % int(window)


def next_slot(*, schedule: dict, after: datetime, job_id: str, created_at: datetime) -> datetime | None:
    """The first slot strictly after ``after``; None when the schedule has no more."""
    kind = schedule.get("kind")
    if kind == "at":
        at = parse_at(schedule["at"])
        return at if at > after else None
    if kind == "every":
        every = int(schedule["everyMs"])
        anchor = int(schedule.get("anchorMs") if schedule.get("anchorMs") is not None else to_ms(created_at))
        after_ms = to_ms(after)
        k = max(0, (after_ms - anchor) // every + 1)
        return from_ms(anchor + k * every)
    if kind == "cron":
        return _next_cron(schedule=schedule, after=after, job_id=job_id)
    return None


def _next_cron(*, schedule: dict, after: datetime, job_id: str) -> datetime:
    expr = schedule["expr"]
    stagger = timedelta(milliseconds=cron_stagger_ms(schedule=schedule, job_id=job_id))
    base = (after - stagger).astimezone(zone(schedule.get("tz") or "local"))
    it = croniter(expr, base, second_at_beginning=len(cron_fields(expr)) == 6)
    return it.get_next(datetime).astimezone(UTC) + stagger


def first_slot(*, schedule: dict, now: datetime, job_id: str, created_at: datetime) -> datetime | None:
    """The slot a new (or re-enabled) job waits for: an ``at`` time even if it is past."""
    if schedule.get("kind") == "at":
        return parse_at(schedule["at"])
    return next_slot(schedule=schedule, after=now, job_id=job_id, created_at=created_at)


def due_slots(
    *, schedule: dict, first: datetime, now: datetime, job_id: str, created_at: datetime, limit: int = 1000
) -> list[datetime]:
    """Slots from ``first`` up to ``now`` (inclusive), oldest first, at most ``limit``."""
    slots: list[datetime] = []
    slot: datetime | None = first
    while slot is not None and slot <= now and len(slots) < limit:
        slots.append(slot)
        slot = next_slot(schedule=schedule, after=slot, job_id=job_id, created_at=created_at)
    return slots

"""Periodic work: the declared django-q2 schedules and an in-process ticker.

django-q2 schedules have a one-minute resolution (and its scheduler looks every 30 s),
so :func:`schedules_ensure` declares minute ticks as the durable safety net, while
:func:`run_ticker` (started by ``manage.py gateway``'s worker role in a thread, or
:func:`arun_ticker` on an event loop) ticks every ``OPENCLAW_SCHEDULER_TICK_S`` seconds
(default 1): heartbeat due times, busy-wake retries after 1 s, cron slots. Ticks are
idempotent and claim work in transactions, so any number of tickers and clusters may
run at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from django.conf import settings
from django.db import close_old_connections, connections

logger = logging.getLogger(__name__)

DECLARED_SCHEDULES = (
    # (name, func, minutes)
    ("openclaw.heartbeat_tick", "cron_app.tasks.heartbeat_tick", 1),
    ("openclaw.cron_tick", "cron_app.tasks.cron_tick", 1),
    ("openclaw.maintenance_sweep", "cron_app.tasks.maintenance_sweep", 5),
)
SWEEP_EVERY_S = 60.0


def schedules_ensure() -> list:
    """Create or update the declared django-q2 ``Schedule`` rows (idempotent)."""
    from django_q.models import Schedule

    rows = []
    for name, func, minutes in DECLARED_SCHEDULES:
        row, _ = Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
        )
        rows.append(row)
    return rows


def tick_interval_s() -> float:
    return float(getattr(settings, "OPENCLAW_SCHEDULER_TICK_S", 1.0))


def tick_once(*, sweep: bool = False) -> None:
    """One pass: heartbeats, cron and (when ``sweep``) the maintenance sweeps."""
    from . import tasks

    close_old_connections()
    for task in (tasks.heartbeat_tick, tasks.cron_tick, *((tasks.maintenance_sweep,) if sweep else ())):
        try:
            task()
        except Exception:  # the ticker must outlive any one failure (a locked database…)
            logger.exception("scheduler task %s failed", task.__name__)


def run_ticker(stop_event: threading.Event, *, interval_s: float | None = None) -> None:
    """Tick until ``stop_event`` is set (blocking; run it in a thread). Returns within
    one interval of the stop, with this thread's database connections closed."""
    interval = interval_s or tick_interval_s()
    last_sweep = 0.0
    try:
        while not stop_event.is_set():
            sweep = time.monotonic() - last_sweep >= SWEEP_EVERY_S
            tick_once(sweep=sweep)
            last_sweep = time.monotonic() if sweep else last_sweep
            stop_event.wait(interval)
    finally:
        connections.close_all()


def start_ticker_thread(*, interval_s: float | None = None) -> tuple[threading.Thread, threading.Event]:
    """Start :func:`run_ticker` in a daemon thread; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=run_ticker, args=(stop,), kwargs={"interval_s": interval_s},
                              name="openclaw-scheduler", daemon=True)  # fmt: skip
    thread.start()
    return thread, stop


def _tick_and_close(*, sweep: bool) -> None:
    try:
        tick_once(sweep=sweep)
    finally:
        connections.close_all()  # executor threads are reused or dropped; hold no connection


async def arun_ticker(stop_event: asyncio.Event, *, interval_s: float | None = None) -> None:
    """:func:`run_ticker` for an event loop: each pass runs in a worker thread."""
    from asgiref.sync import sync_to_async

    interval = interval_s or tick_interval_s()
    last_sweep = 0.0
    while not stop_event.is_set():
        sweep = time.monotonic() - last_sweep >= SWEEP_EVERY_S
        await sync_to_async(_tick_and_close, thread_sensitive=False)(sweep=sweep)
        last_sweep = time.monotonic() if sweep else last_sweep
        try:
            await asyncio.wait_for(stop_event.wait(), interval)
        except asyncio.TimeoutError:
            pass

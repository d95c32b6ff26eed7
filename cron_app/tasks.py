"""django-q2 entry points: each takes ids (or nothing) and calls one service.

Declared schedules (see :mod:`cron_app.scheduler`) run ``heartbeat_tick`` and
``cron_tick`` every minute and ``maintenance_sweep`` every five; inside
``manage.py gateway``'s worker role :func:`cron_app.scheduler.run_ticker` ticks far more
often. Every tick is idempotent, so overlapping clusters and tickers are harmless.
"""

from __future__ import annotations

import logging

from openclaw_site.errors import GatewayError

logger = logging.getLogger(__name__)


def heartbeat_tick() -> int:
    """Request the heartbeats that are due and retry parked wakes; returns how many ran."""
    from .services import heartbeat_tick as tick

    return sum(1 for outcome in tick() if outcome.status == "queued")


def cron_tick() -> int:
    """Fire every due cron slot once; returns how many runs started."""
    from .services import cron_tick as tick

    return len(tick())


def maintenance_sweep() -> dict:
    """Run every registered maintenance sweep (``cron_app.maintenance``)."""
    from .maintenance import run_sweeps

    return run_sweeps()


def cron_webhook(run_pk: int) -> str:
    """POST a finished cron run to its job's webhook (retries inside); returns the status."""
    from .services.deliveries import cron_webhook_deliver

    try:
        return cron_webhook_deliver(run_pk=run_pk).delivery_status
    except GatewayError as error:
        logger.warning("cron webhook %s: %s %s", run_pk, error.code, error.message)
        raise

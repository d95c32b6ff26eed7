"""Registry of periodic maintenance sweeps, run by the ``maintenance_sweep`` task.

Any app registers a sweep with :func:`maintenance_sweep` (``fn(now) -> int | None``,
idempotent and safe to run from several clusters at once: expired leases, delegate idle
closing, delivery retries, retention…). A failing sweep is logged; the others still run.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Callable

from django.utils import timezone

logger = logging.getLogger(__name__)

_SWEEPS: dict[str, Callable[[datetime], int | None]] = {}


def maintenance_sweep(name: str):
    """Decorator: register ``fn(now)`` as the sweep ``name`` (re-registering replaces it)."""

    def register(fn):
        _SWEEPS[name] = fn
        return fn

    return register


def sweep_names() -> list[str]:
    return sorted(_SWEEPS)


def run_sweeps(*, now: datetime | None = None) -> dict[str, int | None | str]:
    """Run every registered sweep once; returns ``{name: result or "error"}``."""
    now = now or timezone.now()
    results: dict[str, int | None | str] = {}
    for name, fn in list(_SWEEPS.items()):
        try:
            results[name] = fn(now)
        except Exception:  # one sweep's failure must not stop the others
            logger.exception("maintenance sweep %s failed", name)
            results[name] = "error"
    return results


@maintenance_sweep("cron.timeouts")
def _cron_timeouts(now: datetime) -> int:
    from .services.runner import cron_timeouts_sweep

    return cron_timeouts_sweep(now=now)


@maintenance_sweep("cron.session-retention")
def cron_sessions_reap(now: datetime) -> int:
    """Delete isolated cron run sessions idle longer than ``cron.sessionRetention``
    (transcripts archived by ``session_delete``); ``false`` keeps them."""
    from openclaw_site.config import get_config
    from openclaw_site.errors import GatewayError
    from sessions_app.models import Run, Session
    from sessions_app.services.sessions import session_delete

    retention = get_config().cron.get("sessionRetentionMs")
    if not retention:
        return 0
    old = Session.objects.filter(key__regex=r"^agent:[^:]+:cron:[^:]+:run:[^:]+$",
                                 updated_at__lt=now - timedelta(milliseconds=retention))  # fmt: skip
    busy = Run.objects.active().values_list("session_key", flat=True)
    reaped = 0
    for key in old.exclude(key__in=busy).values_list("key", flat=True):
        try:
            reaped += bool(session_delete(key=key)["deleted"])
        except GatewayError:
            logger.warning("could not reap cron run session %s", key)
    return reaped

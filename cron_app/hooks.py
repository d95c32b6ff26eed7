"""What heartbeat and cron runs do when the run engine finishes them (``run_hooks``)."""

from __future__ import annotations

from sessions_app.services.run_hooks import ANY_KIND, on_run_finished

from .services.heartbeat_replies import heartbeat_finish
from .services.heartbeats import heartbeat_retry_pending
from .services.runner import cron_run_from_turn


@on_run_finished("heartbeat")
def heartbeat_run_finished(run) -> None:
    heartbeat_finish(run=run)


@on_run_finished("cron")
def cron_turn_finished(run) -> None:
    cron_run_from_turn(turn=run)


@on_run_finished(ANY_KIND)
def retry_parked_wakes(run) -> None:
    """A lane just freed up: wakes parked because the agent was busy are retried now
    rather than on the next tick."""
    heartbeat_retry_pending(agent_id=run.agent_id)

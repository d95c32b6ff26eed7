"""Writes of heartbeats, wake and cron (the only code that mutates their state).

Modules: ``wake`` (wake and system-event requests), ``heartbeats`` (wake requests,
scheduling, coalescing), ``heartbeat_replies`` (the reply contract of a finished
heartbeat run), ``jobs`` (cron job CRUD), ``runner`` (firing slots, results),
``deliveries`` (announce and webhook), ``maintenance`` (sweeps).
"""

from .heartbeat_replies import heartbeat_finish, strip_heartbeat_token
from .heartbeats import heartbeat_request, heartbeat_tick, heartbeats_enabled, heartbeats_set_enabled
from .jobs import cron_job_add, cron_job_get, cron_job_remove, cron_job_set_enabled, cron_job_update
from .runner import cron_job_run, cron_run_finish, cron_tick
from .wake import system_event_add, system_event_post, wake

__all__ = [
    "cron_job_add",
    "cron_job_get",
    "cron_job_remove",
    "cron_job_run",
    "cron_job_set_enabled",
    "cron_job_update",
    "cron_run_finish",
    "cron_tick",
    "heartbeat_finish",
    "heartbeat_request",
    "heartbeat_tick",
    "heartbeats_enabled",
    "heartbeats_set_enabled",
    "strip_heartbeat_token",
    "system_event_add",
    "system_event_post",
    "wake",
]

"""Wire shapes of cron jobs and run-log entries (spec-a §5.1, §5.2), as plain dicts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .models import CronJob, CronRun


def ms(value: datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value else None


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None and v != ""}


def cron_job_state(job: CronJob) -> dict[str, Any]:
    extra = job.state or {}
    return _compact({
        "nextRunAtMs": ms(job.next_run_at), "runningAtMs": ms(job.running_at), "lastRunAtMs": ms(job.last_run_at),
        "lastRunStatus": job.last_status, "lastStatus": job.last_status, "lastError": job.last_error,
        "lastDurationMs": job.last_duration_ms, "consecutiveErrors": job.consecutive_errors,
        "lastDelivered": extra.get("lastDelivered"), "lastDeliveryStatus": extra.get("lastDeliveryStatus"),
        "lastDeliveryError": extra.get("lastDeliveryError"), "scheduleErrorCount": extra.get("scheduleErrorCount"),
    })  # fmt: skip


def cron_job_row(job: CronJob) -> dict[str, Any]:
    """``CronJob`` as OpenClaw's ``cron.list``/``cron.add`` return it."""
    row: dict[str, Any] = {
        "id": job.job_id, "name": job.name, "enabled": job.enabled, "deleteAfterRun": job.delete_after_run,
        "createdAtMs": ms(job.created_at), "updatedAtMs": ms(job.updated_at), "schedule": job.schedule,
        "sessionTarget": job.session_target, "wakeMode": job.wake_mode, "payload": job.payload,
        "catchUp": job.catch_up, "state": cron_job_state(job),
    }  # fmt: skip
    if job.description:
        row["description"] = job.description
    if job.agent_id:
        row["agentId"] = job.agent_id
    if job.session_key:
        row["sessionKey"] = job.session_key
    if job.delivery:
        row["delivery"] = job.delivery
    return row


def cron_run_row(run: CronRun) -> dict[str, Any]:
    """One run-log entry (``cron.runs``): the ``finished`` line of OpenClaw's JSONL log."""
    return _compact({
        "ts": ms(run.ended_at or run.started_at), "jobId": run.job_uid, "jobName": run.job_name,
        "action": "finished" if run.status != CronRun.Status.RUNNING else "started", "status": run.status,
        "error": run.error, "summary": run.summary, "delivered": run.delivered, "deliveryStatus": run.delivery_status,
        "deliveryError": run.delivery_error, "sessionId": run.session_id, "sessionKey": run.session_key,
        "runId": run.run_id, "runAtMs": ms(run.scheduled_for), "durationMs": run.duration_ms,
        "manual": run.manual or None, "model": run.model, "provider": run.provider, "usage": run.usage or None,
        "nextRunAtMs": ms(run.job.next_run_at) if run.job_id and run.job else None,
    })  # fmt: skip

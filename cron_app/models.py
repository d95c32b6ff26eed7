"""Cron jobs, their run log (one row per job and scheduled slot), heartbeat state."""

from __future__ import annotations

import uuid

from django.db import models


def _job_id() -> str:
    return str(uuid.uuid4())


class CronJob(models.Model):
    class SessionTarget(models.TextChoices):
        MAIN = "main"
        ISOLATED = "isolated"

    class WakeMode(models.TextChoices):
        NOW = "now"
        NEXT_HEARTBEAT = "next-heartbeat"

    class CatchUp(models.TextChoices):
        SKIP = "skip"  # slots missed during downtime are recorded as missed, none runs
        ONCE = "once"  # the latest missed slot runs, earlier ones are recorded missed
        ALL = "all"  # every missed slot runs, oldest first

    job_id = models.CharField(max_length=64, unique=True, default=_job_id)
    agent_id = models.CharField(max_length=64, db_index=True)
    name = models.CharField(max_length=256)
    description = models.TextField(blank=True, default="")
    enabled = models.BooleanField(default=True, db_index=True)
    schedule = models.JSONField()  # {kind: at|every|cron, at?, everyMs?, anchorMs?, expr?, tz?, staggerMs?}
    session_target = models.CharField(max_length=16, choices=SessionTarget.choices, default=SessionTarget.MAIN)
    session_key = models.CharField(max_length=512, null=True, blank=True)
    wake_mode = models.CharField(max_length=16, choices=WakeMode.choices, default=WakeMode.NOW)
    payload = models.JSONField()  # {kind: systemEvent, text} | {kind: agentTurn, message, …}
    delivery = models.JSONField(default=dict, blank=True)
    delete_after_run = models.BooleanField(default=False)
    catch_up = models.CharField(max_length=8, choices=CatchUp.choices, default=CatchUp.ONCE)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Set while a run of this job executes: a job never runs twice at once.
    running_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(max_length=16, blank=True, default="")
    last_error = models.TextField(blank=True, default="")
    last_duration_ms = models.IntegerField(null=True, blank=True)
    consecutive_errors = models.PositiveIntegerField(default=0)
    # lastDelivered, lastDeliveryStatus, lastDeliveryError, scheduleErrorCount (spec-a §5.1).
    state = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["next_run_at", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.job_id})"


class CronRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        OK = "ok"
        ERROR = "error"
        SKIPPED = "skipped"
        MISSED = "missed"  # a slot that fell in downtime and was not run (catch-up policy)

    # The run log outlives its job (a one-shot job deleted after its run keeps its log).
    job = models.ForeignKey(CronJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    job_uid = models.CharField(max_length=64, db_index=True)  # CronJob.job_id
    job_name = models.CharField(max_length=256, blank=True, default="")
    scheduled_for = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    manual = models.BooleanField(default=False)  # cron.run / admin "run now"
    run_id = models.CharField(max_length=128, null=True, blank=True, db_index=True)
    session_key = models.CharField(max_length=512, blank=True, default="")
    session_id = models.CharField(max_length=128, blank=True, default="")
    summary = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    delivered = models.BooleanField(null=True, blank=True)
    delivery_status = models.CharField(max_length=16, blank=True, default="")
    delivery_error = models.TextField(blank=True, default="")
    delivery_attempts = models.PositiveSmallIntegerField(default=0)
    model = models.CharField(max_length=256, blank=True, default="")
    provider = models.CharField(max_length=128, blank=True, default="")
    usage = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-scheduled_for"]
        constraints = [
            # A slot fires once, however many clusters race for it.
            models.UniqueConstraint(fields=["job", "scheduled_for"], name="cron_run_once_per_slot"),
        ]

    def __str__(self) -> str:
        return f"{self.job_uid}@{self.scheduled_for:%Y-%m-%d %H:%M} {self.status}"


class HeartbeatState(models.Model):
    """Scheduling state of one agent's heartbeat (what OpenClaw keeps in memory)."""

    agent_id = models.CharField(max_length=64, unique=True)
    next_due_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # What next_due_at was computed from; a config reload keeps it while these are unchanged.
    schedule_signature = models.CharField(max_length=128, blank=True, default="")
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(max_length=16, blank=True, default="")
    last_skip_reason = models.CharField(max_length=64, blank=True, default="")
    last_text = models.TextField(blank=True, default="")
    last_sent_at = models.DateTimeField(null=True, blank=True)
    last_event = models.JSONField(default=dict, blank=True)  # the last `heartbeat` event payload
    last_event_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # Coalesced wakes waiting for a busy target: {"<agent>::<sessionKey>": {intent, reason, …}}.
    pending_wakes = models.JSONField(default=dict, blank=True)
    retry_at = models.DateTimeField(null=True, blank=True, db_index=True)
    enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"heartbeat {self.agent_id}"


class SchedulerState(models.Model):
    """The one row of gateway-wide scheduler switches (``set-heartbeats``); also the lock
    row that serialises cron slot claims across clusters."""

    heartbeats_enabled = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "scheduler state"
        verbose_name_plural = "scheduler state"

    def __str__(self) -> str:
        return f"heartbeats {'enabled' if self.heartbeats_enabled else 'disabled'}"

"""ACP metadata of sessions backed by an external coding agent (Codex, Claude Code, …)."""

from __future__ import annotations

from django.db import models


class AcpSession(models.Model):
    class Mode(models.TextChoices):
        PERSISTENT = "persistent"
        ONESHOT = "oneshot"

    class State(models.TextChoices):
        IDLE = "idle"
        RUNNING = "running"
        ERROR = "error"
        CLOSED = "closed"

    session = models.OneToOneField("sessions_app.Session", on_delete=models.CASCADE, related_name="acp")
    harness_agent = models.CharField(max_length=64)  # acp.agents.<id>
    backend = models.CharField(max_length=32, default="acp")
    runtime_session_name = models.CharField(max_length=256, blank=True, default="")
    upstream_session_id = models.CharField(max_length=256, null=True, blank=True)
    cwd = models.CharField(max_length=1024, blank=True, default="")
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.PERSISTENT)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IDLE, db_index=True)
    runtime_options = models.JSONField(default=dict, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    # Hub delegation: the owner session that may address this worker by label.
    owner_session_key = models.CharField(max_length=512, null=True, blank=True, db_index=True)
    delegated_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=64, blank=True, default="")
    # Which engine process holds the harness process now, and its pid (for operators).
    engine_owner = models.CharField(max_length=128, null=True, blank=True)
    process_pid = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "ACP session"
        # The delegate sweep reads expired workers only: idle ones by (state, last activity),
        # old ones by delegation time; its cost follows the expired rows, not all sessions.
        indexes = [
            models.Index(fields=["state", "last_activity_at"], name="acp_state_activity_idx"),
            models.Index(fields=["delegated_at"], name="acp_delegated_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.harness_agent} {self.session_id} ({self.state})"

    @property
    def is_delegated(self) -> bool:
        return bool(self.owner_session_key)


class Delegate(AcpSession):
    """The admin's Delegates page: hub-delegated workers (open ones unless filtered)."""

    class Meta:
        proxy = True
        verbose_name = "delegate"

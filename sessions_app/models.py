"""The durable state of sessions: rows, not JSON files or memory.

Every piece of state the OpenClaw gateway keeps in a JSON store or in process memory
(session entries, transcripts, run records, system-event queues, pending deliveries,
the sub-agent registry) is a row here, so a crash or restart loses nothing.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from .querysets import DeliveryQuerySet, RunQuerySet, SessionQuerySet, SystemEventQuerySet


def new_uuid() -> str:
    return str(uuid.uuid4())


class Session(models.Model):
    """One agent session (OpenClaw ``SessionEntry``), keyed by its canonical key."""

    class Kind(models.TextChoices):
        MAIN = "main"
        DIRECT = "direct"
        GROUP = "group"
        CRON = "cron"
        SUBAGENT = "subagent"
        ACP = "acp"
        DASHBOARD = "dashboard"
        HOOK = "hook"
        GLOBAL = "global"
        UNKNOWN = "unknown"
        OTHER = "other"

    class State(models.TextChoices):
        IDLE = "idle"
        BUSY = "busy"

    key = models.CharField(max_length=512, unique=True)
    agent_id = models.CharField(max_length=64, db_index=True)
    session_id = models.CharField(max_length=128, default=new_uuid, db_index=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OTHER, db_index=True)
    # Labels are unique per agent for ordinary sessions (label_scope ""), and per owner
    # session for hub-delegated workers (label_scope = the owner's key).
    label = models.CharField(max_length=64, null=True, blank=True)
    label_scope = models.CharField(max_length=512, default="", blank=True)
    display_name = models.CharField(max_length=256, blank=True, default="")
    channel = models.CharField(max_length=64, blank=True, default="")
    chat_type = models.CharField(max_length=16, blank=True, default="direct")
    origin = models.JSONField(default=dict, blank=True)
    delivery_context = models.JSONField(default=dict, blank=True)

    # Lineage (fixed at spawn).
    spawned_by = models.CharField(max_length=512, null=True, blank=True, db_index=True)
    parent_session_key = models.CharField(max_length=512, null=True, blank=True)
    spawn_depth = models.PositiveSmallIntegerField(null=True, blank=True)
    subagent_role = models.CharField(max_length=16, null=True, blank=True)
    subagent_control_scope = models.CharField(max_length=16, null=True, blank=True)
    spawned_workspace_dir = models.CharField(max_length=1024, null=True, blank=True)

    # Per-session settings (absent = keep, null = clear in sessions.patch).
    send_policy = models.CharField(max_length=8, null=True, blank=True)
    queue_mode = models.CharField(max_length=16, null=True, blank=True)
    queue_debounce_ms = models.PositiveIntegerField(null=True, blank=True)
    queue_cap = models.PositiveIntegerField(null=True, blank=True)
    queue_drop = models.CharField(max_length=16, null=True, blank=True)
    model_override = models.CharField(max_length=256, null=True, blank=True)
    provider_override = models.CharField(max_length=128, null=True, blank=True)
    model_override_source = models.CharField(max_length=8, null=True, blank=True)
    model = models.CharField(max_length=256, null=True, blank=True)
    model_provider = models.CharField(max_length=128, null=True, blank=True)
    settings = models.JSONField(default=dict, blank=True)  # thinking/verbose/… levels, exec defaults

    # Runtime state.
    system_sent = models.BooleanField(default=False)
    aborted_last_run = models.BooleanField(default=False)
    state = models.CharField(max_length=8, choices=State.choices, default=State.IDLE, db_index=True)
    active_run_id = models.CharField(max_length=128, null=True, blank=True)
    event_seq = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, null=True, blank=True)  # subagent summary
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    context_tokens = models.BigIntegerField(null=True, blank=True)
    extra = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(db_index=True)
    session_started_at = models.DateTimeField(null=True, blank=True)
    last_interaction_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    objects = SessionQuerySet.as_manager()

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent_id", "label_scope", "label"],
                condition=Q(label__isnull=False),
                name="session_label_unique_per_agent_scope",
            ),
            # A hub-delegated worker's label is unique per owner across every harness agent.
            models.UniqueConstraint(
                fields=["label_scope", "label"],
                condition=Q(label__isnull=False) & ~Q(label_scope=""),
                name="session_delegate_label_unique_per_owner",
            ),
        ]

    def __str__(self) -> str:
        return self.key

    @property
    def is_busy(self) -> bool:
        return self.state == self.State.BUSY


class TranscriptEntry(models.Model):
    """One message of a session's transcript; rows of older ``session_id``s are archived."""

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"
        SYSTEM = "system"
        TOOL = "tool"

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="entries")
    # The Session.session_id this entry was written under (older ids = archived transcripts).
    transcript_id = models.CharField(max_length=128, db_index=True)
    seq = models.PositiveIntegerField()
    message_id = models.CharField(max_length=64, default=new_uuid, unique=True)
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.JSONField(default=list)  # content blocks [{type: text, text}, …]
    provenance = models.JSONField(default=dict, blank=True)  # inter_session source, tool, …
    run_id = models.CharField(max_length=128, null=True, blank=True, db_index=True)
    idempotency_key = models.CharField(max_length=256, null=True, blank=True, unique=True)
    usage = models.JSONField(default=dict, blank=True)
    stop_reason = models.CharField(max_length=32, blank=True, default="")
    model = models.CharField(max_length=256, blank=True, default="")
    provider = models.CharField(max_length=128, blank=True, default="")
    archived = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["session", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["session", "seq"], name="transcript_seq_unique"),
        ]
        indexes = [models.Index(fields=["session", "transcript_id", "seq"])]
        verbose_name_plural = "transcript entries"

    def __str__(self) -> str:
        return f"{self.transcript_id}#{self.seq} {self.role}"

    @property
    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.content if isinstance(b, dict))


class Run(models.Model):
    """One agent turn; ``run_id`` is the idempotency key."""

    class Kind(models.TextChoices):
        USER = "user"
        HEARTBEAT = "heartbeat"
        CRON = "cron"
        ANNOUNCE = "announce"
        A2A = "a2a"
        SUBAGENT = "subagent"
        ACP = "acp"
        DELIVERY = "delivery"
        SYSTEM = "system"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        OK = "ok"
        ERROR = "error"
        TIMEOUT = "timeout"
        ABORTED = "aborted"

    TERMINAL = (Status.OK, Status.ERROR, Status.TIMEOUT, Status.ABORTED)

    run_id = models.CharField(max_length=128, unique=True, default=new_uuid)
    session = models.ForeignKey(Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    session_key = models.CharField(max_length=512, db_index=True, blank=True, default="")
    agent_id = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.USER)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    input = models.JSONField(default=dict, blank=True)  # message, attachments, extraSystemPrompt …
    output = models.JSONField(default=dict, blank=True)  # text, stopReason …
    error = models.JSONField(null=True, blank=True)  # ErrorShape-like {code, message}
    usage = models.JSONField(default=dict, blank=True)
    timeout_s = models.PositiveIntegerField(null=True, blank=True)
    abort_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_owner = models.CharField(max_length=128, null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    source_session_key = models.CharField(max_length=512, null=True, blank=True)
    parent_run_id = models.CharField(max_length=128, null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)  # debounce of queued follow-ups
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "created_at"]), models.Index(fields=["session", "status"])]

    def __str__(self) -> str:
        return f"{self.run_id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL

    @property
    def duration_ms(self) -> int | None:
        if self.started_at and self.ended_at:
            return int((self.ended_at - self.started_at).total_seconds() * 1000)
        return None


class SystemEvent(models.Model):
    """A durable ``System:`` line queued for a session's next model step."""

    session_key = models.CharField(max_length=512, db_index=True)
    agent_id = models.CharField(max_length=64)
    text = models.TextField()
    context_key = models.CharField(max_length=256, null=True, blank=True, db_index=True)
    origin = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    consumed_at = models.DateTimeField(null=True, blank=True)
    consumed_by_run_id = models.CharField(max_length=128, null=True, blank=True)

    objects = SystemEventQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["session_key", "consumed_at"])]

    def __str__(self) -> str:
        return f"{self.session_key}: {self.text[:60]}"


class Delivery(models.Model):
    """One message from one session to another; delivered exactly once or failed loudly."""

    class Kind(models.TextChoices):
        ANNOUNCE = "announce"
        SEND = "send"
        PINGBACK = "pingback"
        FOLLOWUP = "followup"
        A2A = "a2a"
        REPLY = "reply"

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        CONSUMED = "consumed"
        FAILED = "failed"
        EXPIRED = "expired"

    delivery_id = models.CharField(max_length=64, unique=True, default=new_uuid)
    idempotency_key = models.CharField(max_length=512, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    source_session_key = models.CharField(max_length=512, blank=True, default="", db_index=True)
    source_run_id = models.CharField(max_length=128, null=True, blank=True)
    target_session_key = models.CharField(max_length=512, db_index=True)
    target_run_id = models.CharField(max_length=128, null=True, blank=True)
    payload = models.JSONField(default=dict)  # {text, …}
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=5)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    consumed_by_run_id = models.CharField(max_length=128, null=True, blank=True)
    reply = models.JSONField(null=True, blank=True)
    sender_notified = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    consumed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["target_session_key", "state"])]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.kind} {self.source_session_key} -> {self.target_session_key} ({self.state})"


class SubagentRun(models.Model):
    """The sub-agent registry record (OpenClaw ``SubagentRunRecord``)."""

    class Status(models.TextChoices):
        RUNNING = "running"
        OK = "ok"
        ERROR = "error"
        TIMEOUT = "timeout"
        KILLED = "killed"

    class AnnounceState(models.TextChoices):
        PENDING = "pending"
        ANNOUNCED = "announced"
        SKIPPED = "skipped"
        FAILED = "failed"
        DROPPED = "dropped"  # the requester's announce queue overflowed; summarized to it

    run_id = models.CharField(max_length=128, unique=True)
    child_session_key = models.CharField(max_length=512, db_index=True)
    requester_session_key = models.CharField(max_length=512, db_index=True)
    requester_run_id = models.CharField(max_length=128, null=True, blank=True)
    requester_display_key = models.CharField(max_length=512, blank=True, default="")
    requester_origin = models.JSONField(default=dict, blank=True)
    task = models.TextField()
    label = models.CharField(max_length=64, blank=True, default="")
    agent_id = models.CharField(max_length=64)
    model = models.CharField(max_length=256, blank=True, default="")
    cleanup = models.CharField(max_length=8, default="keep")
    mode = models.CharField(max_length=8, default="run")
    depth = models.PositiveSmallIntegerField(default=1)
    role = models.CharField(max_length=16, default="leaf")
    run_timeout_s = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    outcome = models.JSONField(default=dict, blank=True)  # {status, error?}
    frozen_result = models.TextField(null=True, blank=True)
    announce_state = models.CharField(
        max_length=16, choices=AnnounceState.choices, default=AnnounceState.PENDING, db_index=True
    )
    announce_attempts = models.PositiveSmallIntegerField(default=0)
    announce_delivery_id = models.CharField(max_length=64, null=True, blank=True)
    # How the announce reached the requester (spec-b §3.7): direct | steered | queued.
    announce_path = models.CharField(max_length=16, blank=True, default="")
    expects_completion_message = models.BooleanField(default=True)
    resumable = models.BooleanField(default=False)
    steered_from_run_id = models.CharField(max_length=128, null=True, blank=True)
    steer_count = models.PositiveSmallIntegerField(default=0)
    last_steer_at = models.DateTimeField(null=True, blank=True)
    suppress_announce_reason = models.CharField(max_length=32, blank=True, default="")
    cleanup_handled = models.BooleanField(default=False)
    # Announce flow state (spec-b §2.1, §3.1): follow-up runs, descendant wake, retries.
    is_follow_up = models.BooleanField(default=False)
    wake_on_descendant_settle = models.BooleanField(default=False)
    fallback_frozen_result = models.TextField(null=True, blank=True)
    ended_reason = models.CharField(max_length=32, blank=True, default="")
    next_announce_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_announce_error = models.TextField(blank=True, default="")
    cleanup_completed_at = models.DateTimeField(null=True, blank=True)
    usage = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    archive_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.label or self.child_session_key} ({self.status})"


class SessionEvent(models.Model):
    """A published event of a session, kept so reconnecting clients can resume by seq."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="events")
    session_key = models.CharField(max_length=512)
    seq = models.BigIntegerField()
    event = models.CharField(max_length=64)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["session", "seq"]
        constraints = [models.UniqueConstraint(fields=["session", "seq"], name="session_event_seq_unique")]

    def __str__(self) -> str:
        return f"{self.session_key}#{self.seq} {self.event}"

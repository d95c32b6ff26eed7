"""The operator console for cron jobs, their run log, heartbeats and the scheduler switch.

Rows are read-only; every change is an action that loops over one service (the same one
the RPC methods and commands call). System events have their admin in ``sessions_app``.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.forms.models import BaseInlineFormSet

from openclaw_site.errors import GatewayError
from sessions_app.admin import ReadOnlyAdmin, ReadOnlyInline, apply_service, error_text

from .models import CronJob, CronRun, HeartbeatState, SchedulerState
from .services import (
    cron_job_remove,
    cron_job_run,
    cron_job_set_enabled,
    heartbeat_request,
    heartbeats_set_enabled,
)

RECENT_RUNS = 50


def schedule_text(schedule: dict) -> str:
    kind = (schedule or {}).get("kind")
    if kind == "at":
        return f"at {schedule.get('at')}"
    if kind == "every":
        return f"every {int(schedule.get('everyMs', 0)) // 1000}s"
    if kind == "cron":
        return f"cron {schedule.get('expr')} {schedule.get('tz') or ''}".strip()
    return str(schedule)


class RecentRunsFormSet(BaseInlineFormSet):
    """Only the job's latest runs (a frequent job's log is long)."""

    def get_queryset(self):
        runs = super().get_queryset()
        recent = list(runs.order_by("-scheduled_for").values_list("pk", flat=True)[:RECENT_RUNS])
        return runs.filter(pk__in=recent).order_by("-scheduled_for")


class CronRunInline(ReadOnlyInline):
    model = CronRun
    formset = RecentRunsFormSet
    fields = ["scheduled_for", "status", "manual", "summary", "error", "delivery_status", "duration_ms"]
    readonly_fields = fields
    verbose_name_plural = f"latest runs (up to {RECENT_RUNS})"


@admin.register(CronJob)
class CronJobAdmin(ReadOnlyAdmin):
    list_display = ["name", "job_id", "agent_id", "enabled", "schedule_summary", "session_target", "next_run_at",
                    "last_status", "consecutive_errors"]  # fmt: skip
    list_filter = ["enabled", "session_target", "wake_mode", "catch_up", "agent_id", "last_status"]
    search_fields = ["name", "job_id", "description"]
    inlines = [CronRunInline]
    actions = ["run_now", "enable_jobs", "disable_jobs", "remove_jobs"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.opts.concrete_fields]

    @admin.display(description="schedule")
    def schedule_summary(self, job: CronJob) -> str:
        return schedule_text(job.schedule)

    @admin.action(description="Run now", permissions=["operate"])
    def run_now(self, request, queryset):
        for job in queryset:
            try:
                result = cron_job_run(job=job, mode="force")
            except GatewayError as exc:
                self.message_user(request, f"{job}: {error_text(exc)}", level=messages.ERROR)
                continue
            if result.get("ran"):
                self.message_user(request, f"{job}: started.", level=messages.SUCCESS)
            else:
                self.message_user(request, f"{job}: not run ({result.get('reason')}).", level=messages.WARNING)

    @admin.action(description="Enable", permissions=["operate"])
    def enable_jobs(self, request, queryset):
        apply_service(self, request, queryset, lambda job: cron_job_set_enabled(job_id=job.job_id, enabled=True), "Enabled")

    @admin.action(description="Disable", permissions=["operate"])
    def disable_jobs(self, request, queryset):
        apply_service(self, request, queryset, lambda job: cron_job_set_enabled(job_id=job.job_id, enabled=False), "Disabled")

    @admin.action(description="Remove (queued reminders dropped, run log kept)", permissions=["operate"])
    def remove_jobs(self, request, queryset):
        apply_service(self, request, list(queryset), lambda job: cron_job_remove(job_id=job.job_id), "Removed")


@admin.register(CronRun)
class CronRunAdmin(ReadOnlyAdmin):
    list_display = ["job_name", "job_uid", "scheduled_for", "status", "manual", "delivery_status", "duration_ms"]
    list_filter = ["status", "manual", "delivery_status"]
    search_fields = ["job_uid", "job_name", "summary", "error", "run_id", "session_key"]
    date_hierarchy = "scheduled_for"

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.opts.concrete_fields]


@admin.register(HeartbeatState)
class HeartbeatStateAdmin(ReadOnlyAdmin):
    list_display = ["agent_id", "next_due_at", "last_run_at", "last_status", "last_skip_reason", "last_event_at"]
    search_fields = ["agent_id"]
    actions = ["ping_now"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.opts.concrete_fields]

    @admin.action(description="Run a heartbeat now (manual ping)", permissions=["operate"])
    def ping_now(self, request, queryset):
        for state in queryset:
            [outcome] = heartbeat_request(source="manual", intent="manual", reason="admin", agent_id=state.agent_id)
            level = messages.SUCCESS if outcome.status in ("queued", "coalesced") else messages.WARNING
            self.message_user(request, f"{state.agent_id}: {outcome.status} {outcome.reason}".strip(), level=level)


@admin.register(SchedulerState)
class SchedulerStateAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "heartbeats_enabled", "updated_at"]
    actions = ["enable_heartbeats", "disable_heartbeats"]

    def changelist_view(self, request, extra_context=None):
        SchedulerState.objects.get_or_create(pk=1)  # the one row the actions are chosen on
        return super().changelist_view(request, extra_context)

    @admin.action(description="Enable heartbeats (every agent)", permissions=["operate"])
    def enable_heartbeats(self, request, queryset):
        heartbeats_set_enabled(enabled=True)
        self.message_user(request, "Heartbeats enabled.", level=messages.SUCCESS)

    @admin.action(description="Disable heartbeats (every agent)", permissions=["operate"])
    def disable_heartbeats(self, request, queryset):
        heartbeats_set_enabled(enabled=False)
        self.message_user(request, "Heartbeats disabled.", level=messages.SUCCESS)

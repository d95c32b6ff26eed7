"""The operator console for sessions, transcripts, runs, deliveries and sub-agents.

Rows are read-only here: every change an operator makes goes through an action that
loops over ONE service (the same one the RPC methods and agent tools call), so the
events, ordering and checks are never skipped. Each action reports per row with
``message_user``; a :class:`GatewayError` is shown at level ERROR with its code.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Iterable

from django import forms
from django.contrib import admin, messages
from django.db.models import Q
from django.forms.models import BaseInlineFormSet
from django.template.response import TemplateResponse
from django.utils.text import Truncator

from openclaw_site.errors import GatewayError

from .models import Delivery, Run, Session, SessionEvent, SubagentRun, SystemEvent, TranscriptEntry

TRANSCRIPT_INLINE_LIMIT = 200


def optional_service(module: str, name: str) -> Callable | None:
    """A service another feature provides, or None while it does not exist yet."""
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def error_text(exc: GatewayError) -> str:
    code = exc.code if exc.detail_code == exc.code else f"{exc.code}/{exc.detail_code}"
    return f"{code}: {exc.message}"


def apply_service(modeladmin, request, rows: Iterable[Any], fn: Callable[[Any], Any], verb: str) -> int:
    """Call ``fn(row)`` for each row; report failures one by one and the successes once."""
    done = 0
    for row in rows:
        try:
            fn(row)
        except GatewayError as exc:
            modeladmin.message_user(request, f"{row}: {error_text(exc)}", level=messages.ERROR)
        else:
            done += 1
    if done:
        modeladmin.message_user(request, f"{verb} {done} row(s).", level=messages.SUCCESS)
    return done


def missing_service(modeladmin, request, what: str) -> None:
    modeladmin.message_user(request, f"UNAVAILABLE: {what} is not available in this build.", level=messages.ERROR)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows change only through actions (services); operators may look at everything."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_operate_permission(self, request) -> bool:
        """Who may run the actions: staff with change rights on the model."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# --- sessions -------------------------------------------------------------------


class CurrentTranscriptFormSet(BaseInlineFormSet):
    """Only the entries of the session's current ``session_id``, the last ones first cut."""

    def get_queryset(self):
        current = super().get_queryset().filter(transcript_id=self.instance.session_id)
        tail = list(current.order_by("-seq").values_list("pk", flat=True)[:TRANSCRIPT_INLINE_LIMIT])
        return current.filter(pk__in=tail).order_by("seq")


class TranscriptInline(ReadOnlyInline):
    model = TranscriptEntry
    formset = CurrentTranscriptFormSet
    fields = ["seq", "role", "preview", "run_id", "created_at"]
    readonly_fields = fields
    verbose_name_plural = f"current transcript (last {TRANSCRIPT_INLINE_LIMIT} entries)"

    @admin.display(description="text")
    def preview(self, entry: TranscriptEntry) -> str:
        return Truncator(entry.text).chars(300)


class DelegatedFilter(admin.SimpleListFilter):
    """Hub-delegated ACP workers: sessions whose ACP metadata names an owner session."""

    title = "delegated"
    parameter_name = "delegated"

    def lookups(self, request, model_admin):
        return [("yes", "Delegated"), ("no", "Not delegated")]

    def queryset(self, request, queryset):
        delegated = Q(acp__owner_session_key__isnull=False) & ~Q(acp__owner_session_key="")
        if self.value() == "yes":
            return queryset.filter(delegated)
        if self.value() == "no":
            return queryset.exclude(delegated)
        return queryset


class WakeForm(forms.Form):
    """A wake naming a session is always immediate (OpenClaw PR #78687), so there is no mode."""

    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), help_text="The System: line.")


@admin.register(Session)
class SessionAdmin(ReadOnlyAdmin):
    list_display = ["key", "agent_id", "kind", "label", "state", "updated_at"]
    list_filter = ["agent_id", "kind", "state", DelegatedFilter]
    search_fields = ["key", "label"]
    date_hierarchy = "updated_at"
    inlines = [TranscriptInline]
    actions = ["reset_sessions", "delete_sessions", "wake_sessions"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.opts.concrete_fields]

    @admin.action(description="Reset (new transcript, settings kept)", permissions=["operate"])
    def reset_sessions(self, request, queryset):
        from .services.sessions import session_reset

        apply_service(self, request, queryset, lambda row: session_reset(key=row.key, reason="reset"), "Reset")

    @admin.action(description="Delete (transcript archived)", permissions=["operate"])
    def delete_sessions(self, request, queryset):
        from .services.sessions import session_delete

        apply_service(self, request, queryset, lambda row: session_delete(key=row.key), "Deleted")

    @admin.action(description="Wake with a system event…", permissions=["operate"])
    def wake_sessions(self, request, queryset):
        wake = optional_service("cron_app.services.wake", "wake")
        if wake is None:
            return missing_service(self, request, "wake (cron_app.services.wake)")
        form = WakeForm(request.POST if "apply" in request.POST else None)
        if not form.is_valid():
            return self.wake_form_page(request, queryset, form)
        text = form.cleaned_data["text"]
        apply_service(self, request, queryset, lambda row: wake(mode="now", text=text, session_key=row.key), "Woke")
        return None

    def wake_form_page(self, request, queryset, form: WakeForm) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Wake sessions with a system event",
            "opts": self.opts,
            "form": form,
            "sessions": queryset,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/sessions_app/session/wake.html", context)


# --- transcripts ----------------------------------------------------------------


@admin.register(TranscriptEntry)
class TranscriptEntryAdmin(ReadOnlyAdmin):
    list_display = ["session", "transcript_id", "seq", "role", "preview", "archived", "created_at"]
    list_filter = ["role", "archived"]
    search_fields = ["session__key", "transcript_id", "message_id", "run_id"]
    list_select_related = ["session"]

    @admin.display(description="text")
    def preview(self, entry: TranscriptEntry) -> str:
        return Truncator(entry.text).chars(120)


# --- runs -----------------------------------------------------------------------


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ["run_id", "session_key", "kind", "status", "duration", "tokens", "error_text", "created_at"]
    list_filter = ["status", "kind", "agent_id", "abort_requested"]
    search_fields = ["run_id", "session_key"]
    date_hierarchy = "created_at"
    actions = ["abort_runs"]

    @admin.display(description="duration")
    def duration(self, run: Run) -> str:
        ms = run.duration_ms
        return "" if ms is None else f"{ms / 1000:.1f} s"

    @admin.display(description="tokens")
    def tokens(self, run: Run) -> int | str:
        usage = run.usage or {}
        total = usage.get("totalTokens", usage.get("total"))
        if total is None and ("input" in usage or "output" in usage):
            total = (usage.get("input") or 0) + (usage.get("output") or 0)
        return "" if total is None else total

    @admin.display(description="error")
    def error_text(self, run: Run) -> str:
        if not run.error:
            return ""
        return Truncator(f"{run.error.get('code', '')}: {run.error.get('message', '')}").chars(80)

    @admin.action(description="Abort (queued: at once; running: at the next step)", permissions=["operate"])
    def abort_runs(self, request, queryset):
        from .services.runs import run_abort

        apply_service(self, request, queryset, lambda row: run_abort(run=row), "Abort requested for")


# --- deliveries and system events ------------------------------------------------


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "delivery_id", "kind", "source_session_key", "target_session_key", "state", "attempts",
        "consumed_by_run_id", "next_attempt_at", "created_at",
    ]  # fmt: skip
    list_filter = ["state", "kind", "sender_notified"]
    search_fields = ["delivery_id", "idempotency_key", "source_session_key", "target_session_key"]
    date_hierarchy = "created_at"
    actions = ["retry_deliveries"]

    @admin.action(description="Retry failed deliveries", permissions=["operate"])
    def retry_deliveries(self, request, queryset):
        from .services.deliveries import delivery_retry

        apply_service(self, request, queryset, lambda row: delivery_retry(delivery=row), "Queued for retry")


@admin.register(SystemEvent)
class SystemEventAdmin(ReadOnlyAdmin):
    list_display = ["session_key", "preview", "context_key", "origin", "created_at", "consumed_at"]
    list_filter = [("consumed_at", admin.EmptyFieldListFilter), "origin", "agent_id"]
    search_fields = ["session_key", "text", "context_key"]

    @admin.display(description="text")
    def preview(self, event: SystemEvent) -> str:
        return Truncator(event.text).chars(120)


# --- sub-agents and session events -------------------------------------------------


@admin.register(SubagentRun)
class SubagentRunAdmin(ReadOnlyAdmin):
    list_display = [
        "label", "child_session_key", "requester_session_key", "agent_id", "status", "announce_state",
        "created_at", "ended_at",
    ]  # fmt: skip
    list_filter = ["status", "announce_state", "agent_id", "mode"]
    search_fields = ["run_id", "label", "child_session_key", "requester_session_key", "task"]
    date_hierarchy = "created_at"
    actions = ["kill_subagents"]

    @admin.action(description="Kill", permissions=["operate"])
    def kill_subagents(self, request, queryset):
        kill = optional_service("sessions_app.services.subagent_control", "subagent_kill") or optional_service(
            "sessions_app.services.subagents", "subagent_kill"
        )
        if kill is None:
            return missing_service(self, request, "subagent kill (sessions_app.services.subagent_control)")
        for row in queryset:
            # The same call as ``/subagents kill <childKey>`` from the requester (descendants too).
            result = kill(caller_session_key=row.requester_session_key, target=row.child_session_key)
            level = {"ok": messages.SUCCESS, "done": messages.WARNING}.get(result.get("status"), messages.ERROR)
            text = result.get("text") or result.get("error") or result.get("status")
            if level == messages.ERROR:
                text = f"{row}: INVALID_REQUEST/SUBAGENT_KILL_FAILED: {text}"
            self.message_user(request, text, level=level)
        return None


@admin.register(SessionEvent)
class SessionEventAdmin(ReadOnlyAdmin):
    list_display = ["session_key", "seq", "event", "created_at"]
    list_filter = ["event"]
    search_fields = ["session_key"]

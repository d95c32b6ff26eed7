"""The Delegates page: hub-delegated ACP workers across owners, for operators.

Read-only rows; closing goes through :func:`acp_app.services.delegate_close` (identity
cleared first, then the harness; restored and reported on failure), from the bulk
action or the "Close delegate" button of a worker's page. The ``status`` filter shows
open workers unless asked for closed ones or all.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse

from openclaw_site.errors import GatewayError
from sessions_app.admin import ReadOnlyAdmin, apply_service, error_text

from .models import AcpSession, Delegate
from .selectors import delegate_expiry, iso
from .services import MANUAL_CLOSE, delegate_close

CLOSED_DELEGATE = Q(runtime_options__has_key="closedDelegate")


class DelegateStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("open", "Open (default)"), ("closed", "Closed"), ("all", "All")]

    def queryset(self, request, queryset):
        open_rows = Q(owner_session_key__isnull=False) & ~Q(owner_session_key="") & ~Q(state=AcpSession.State.CLOSED)
        value = self.value() or "open"
        if value == "closed":
            return queryset.filter(CLOSED_DELEGATE, state=AcpSession.State.CLOSED)
        if value == "all":
            return queryset.filter(open_rows | CLOSED_DELEGATE)
        return queryset.filter(open_rows)

    def choices(self, changelist):
        for lookup, title in self.lookup_choices:
            selected = (self.value() or "open") == lookup
            yield {"selected": selected, "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                   "display": title}  # fmt: skip


@admin.register(Delegate)
class DelegateAdmin(ReadOnlyAdmin):
    list_display = ["label", "harness_agent", "state", "owner_session_key", "worker_key", "last_activity_at",
                    "idle_expires", "max_age_expires"]  # fmt: skip
    list_filter = [DelegateStatusFilter, "state", "harness_agent"]
    search_fields = ["owner_session_key", "session__key", "session__label"]
    list_select_related = ["session"]
    ordering = ["-last_activity_at"]
    actions = ["close_delegates"]
    change_form_template = "admin/acp_app/delegate/change_form.html"
    readonly_fields = ["label", "worker_key", "harness_agent", "state", "mode", "owner_session_key", "delegated_at",
                       "last_activity_at", "idle_expires", "max_age_expires", "cwd", "upstream_session_id",
                       "process_pid", "engine_owner", "last_error", "closed_at", "close_reason"]  # fmt: skip
    fields = readonly_fields

    @admin.display(description="label", ordering="session__label")
    def label(self, acp: AcpSession) -> str:
        return acp.session.label or (acp.runtime_options or {}).get("closedDelegate", {}).get("label") or "—"

    @admin.display(description="worker session", ordering="session__key")
    def worker_key(self, acp: AcpSession) -> str:
        return acp.session.key

    @admin.display(description="idle expires")
    def idle_expires(self, acp: AcpSession) -> str:
        return iso(delegate_expiry(acp).idle_expires_at) if acp.owner_session_key else "—"

    @admin.display(description="max age expires")
    def max_age_expires(self, acp: AcpSession) -> str:
        return iso(delegate_expiry(acp).max_age_expires_at) if acp.owner_session_key else "—"

    @admin.action(description="Close selected delegates", permissions=["operate"])
    def close_delegates(self, request, queryset):
        apply_service(self, request, queryset.select_related("session"),
                      lambda acp: delegate_close(session_key=acp.session.key, reason=MANUAL_CLOSE), "Closed")  # fmt: skip

    # --- the "Close delegate" button of a worker's page -------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view(self.close_view)
        name = f"{self.opts.app_label}_{self.opts.model_name}_close"
        return [path("<path:object_id>/close/", view, name=name), *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {**(extra_context or {}), "can_operate": self.has_operate_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def close_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_operate_permission(request):
            raise PermissionDenied
        acp = self.get_object(request, object_id)
        if acp is None:
            self.message_user(request, f"No delegate {object_id}.", level=messages.ERROR)
            return HttpResponseRedirect(reverse("admin:acp_app_delegate_changelist"))
        try:
            result = delegate_close(session_key=acp.session.key, reason=MANUAL_CLOSE)
        except GatewayError as exc:
            self.message_user(request, f"{acp.session.key}: {error_text(exc)}", level=messages.ERROR)
            return HttpResponseRedirect(reverse("admin:acp_app_delegate_change", args=[acp.pk]))
        self.message_user(request, f'Closed "{result["label"]}" ({result["sessionKey"]}): {result["runtimeNotice"]}.',
                          level=messages.SUCCESS)  # fmt: skip
        return HttpResponseRedirect(reverse("admin:acp_app_delegate_changelist"))

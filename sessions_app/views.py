"""The WebChat hub page: a plain template and ES modules that speak the gateway protocol
over ``/ws`` with the operator's admin session (no token in the page)."""

from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import render


@staff_member_required
def webchat(request):
    """The hub for logged-in staff; ``?session=<key>`` opens that session first."""
    return render(request, "webchat.html", {"initial_session": request.GET.get("session", "")})


def admin_dashboard(request):
    """The operator dashboard (wrapped by ``admin.site.admin_view`` in the URLconf)."""
    from django.contrib import admin
    from django.template.response import TemplateResponse

    context = {**admin.site.each_context(request), "title": "Dashboard"}
    return TemplateResponse(request, "admin/dashboard.html", context)

"""The WebChat hub page: a plain template and ES modules that speak the gateway protocol
over ``/ws`` with the operator's admin session (no token in the page)."""

from django.contrib.admin.views.decorators import staff_member_required
from django.shortcuts import render


@staff_member_required
def webchat(request):
    """The hub for logged-in staff; ``?session=<key>`` opens that session first."""
    return render(request, "webchat.html", {"initial_session": request.GET.get("session", "")})

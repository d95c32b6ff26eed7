"""Who may use the REST API: operators (the gateway token, or a staff Django user)."""

from __future__ import annotations

from rest_framework.permissions import BasePermission


class IsOperator(BasePermission):
    """Authenticated and staff; a logged-in non-staff user is refused (403)."""

    message = "operator access required"

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)

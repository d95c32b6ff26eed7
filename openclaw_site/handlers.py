"""Error pages: under ``/api/`` the gateway envelope (JSON), elsewhere Django's HTML pages.

A URL under ``/api/v1/`` that matches no route (e.g. a session key with a newline, which
the ``path`` converter refuses) would otherwise get Django's HTML 404.
"""

from __future__ import annotations

from django.http import JsonResponse
from django.views import defaults

from .errors import GatewayError, NotFoundError, UnavailableError


class InternalError(UnavailableError):
    """An unexpected failure, as the WebSocket consumer reports it (not retryable)."""

    http_status = 500
    default_message = "internal error"
    retryable = False


def page_not_found(request, exception=None):
    if _is_api(request):
        return _envelope(NotFoundError("no such route", details={"code": "NOT_FOUND", "path": request.path}))
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return _envelope(InternalError(details={"code": "INTERNAL_ERROR"}))
    return defaults.server_error(request)


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def _envelope(error: GatewayError) -> JsonResponse:
    return JsonResponse(error.to_envelope(), status=error.http_status)

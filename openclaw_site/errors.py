"""One error hierarchy for every door into the gateway.

A :class:`GatewayError` carries the wire ``code`` of the OpenClaw protocol's ErrorShape,
an HTTP status for REST, a message and optional ``details`` (``details["code"]`` is the
finer machine code, e.g. ``MISSING_SCOPE``). The WebSocket consumer turns it into an
ErrorShape, DRF's handler into ``{"error": {...}}``, the admin into a message.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    code = "INVALID_REQUEST"
    http_status = 400
    default_message = "invalid request"
    retryable: bool | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        retryable: bool | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        if retryable is not None:
            self.retryable = retryable
        self.retry_after_ms = retry_after_ms
        super().__init__(self.message)

    @property
    def detail_code(self) -> str:
        if self.details and isinstance(self.details.get("code"), str):
            return self.details["code"]
        return self.code

    def to_shape(self) -> dict[str, Any]:
        """The protocol's ErrorShape."""
        shape: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            shape["details"] = self.details
        if self.retryable is not None:
            shape["retryable"] = self.retryable
        if self.retry_after_ms is not None:
            shape["retryAfterMs"] = self.retry_after_ms
        return shape

    def to_envelope(self) -> dict[str, Any]:
        """The REST error envelope."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        if self.retryable is not None:
            body["retryable"] = self.retryable
        return {"error": body}


class InvalidRequestError(GatewayError):
    code = "INVALID_REQUEST"


class InvalidParamsError(InvalidRequestError):
    """``invalid <method> params: <errors>``."""

    def __init__(self, method: str, errors: str, **kwargs: Any) -> None:
        super().__init__(f"invalid {method} params: {errors}", **kwargs)


class NotFoundError(GatewayError):
    code = "INVALID_REQUEST"
    http_status = 404
    default_message = "not found"


class ConflictError(GatewayError):
    code = "INVALID_REQUEST"
    http_status = 409
    default_message = "conflict"


class ForbiddenError(GatewayError):
    code = "FORBIDDEN"
    http_status = 403
    default_message = "forbidden"


class MissingScopeError(ForbiddenError):
    def __init__(self, scope: str) -> None:
        super().__init__(
            f"missing scope: {scope}",
            details={"code": "MISSING_SCOPE", "missingScope": scope, "requiredScopes": [scope]},
        )


class UnauthorizedError(GatewayError):
    code = "INVALID_REQUEST"
    http_status = 401
    default_message = "unauthorized"


class UnavailableError(GatewayError):
    code = "UNAVAILABLE"
    http_status = 503
    default_message = "unavailable"
    retryable = True


class AgentTimeoutError(GatewayError):
    code = "AGENT_TIMEOUT"
    http_status = 504
    default_message = "agent timeout"


def drf_exception_handler(exc: Exception, context: dict[str, Any]):
    """DRF exception handler: every error leaves in the gateway envelope."""
    from django.db import DatabaseError, InterfaceError
    from rest_framework import exceptions as drf_exceptions
    from rest_framework.response import Response

    if isinstance(exc, GatewayError):
        return Response(exc.to_envelope(), status=exc.http_status)
    if isinstance(exc, (DatabaseError, InterfaceError)) and not isinstance(exc, drf_exceptions.APIException):
        err = UnavailableError("database unavailable", details={"code": "DATABASE_UNAVAILABLE"})
        return Response(err.to_envelope(), status=err.http_status)
    if isinstance(exc, drf_exceptions.APIException):
        mapping = {
            drf_exceptions.NotAuthenticated: ("INVALID_REQUEST", "UNAUTHENTICATED"),
            drf_exceptions.AuthenticationFailed: ("INVALID_REQUEST", "AUTH_TOKEN_MISMATCH"),
            drf_exceptions.PermissionDenied: ("FORBIDDEN", "FORBIDDEN"),
            drf_exceptions.NotFound: ("INVALID_REQUEST", "NOT_FOUND"),
            drf_exceptions.MethodNotAllowed: ("INVALID_REQUEST", "METHOD_NOT_ALLOWED"),
            drf_exceptions.ParseError: ("INVALID_REQUEST", "PARSE_ERROR"),
            drf_exceptions.UnsupportedMediaType: ("INVALID_REQUEST", "UNSUPPORTED_MEDIA_TYPE"),
            drf_exceptions.Throttled: ("UNAVAILABLE", "THROTTLED"),
            drf_exceptions.ValidationError: ("INVALID_REQUEST", "INVALID_PARAMS"),
        }
        code, detail_code = "INVALID_REQUEST", "ERROR"
        for klass, pair in mapping.items():
            if isinstance(exc, klass):
                code, detail_code = pair
                break
        details: dict[str, Any] = {"code": detail_code}
        if isinstance(exc, drf_exceptions.ValidationError):
            details["fields"] = exc.detail
            message = "invalid params: " + _flatten_validation(exc.detail)
        else:
            message = str(exc.detail)
        status = exc.status_code
        if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
            status = 401
        response = Response({"error": {"code": code, "message": message, "details": details}}, status=status)
        # A 401 must name its scheme (RFC 9110 §11.6.1), as DRF's own handler does.
        if getattr(exc, "auth_header", None):
            response["WWW-Authenticate"] = exc.auth_header
        return response
    return None


def _flatten_validation(detail: Any, prefix: str = "") -> str:
    if isinstance(detail, dict):
        parts = [_flatten_validation(v, f"{prefix}/{k}") for k, v in detail.items()]
        return "; ".join(p for p in parts if p)
    if isinstance(detail, list):
        return "; ".join(_flatten_validation(v, prefix) for v in detail)
    return f"at {prefix or '/'}: {detail}"

"""Errors of ACP spawns and hub-delegated workers, each with a stable ``details.code``.

Spawn refusals also carry OpenClaw's ``errorCode`` (spec-b §1.2) and the tool result
``status`` (``forbidden`` or ``error``), so :func:`acp_app.services.acp_spawn` can turn
them into a ``sessions_spawn`` result unchanged.
"""

from __future__ import annotations

from typing import Any

from openclaw_site.errors import ConflictError, ForbiddenError, GatewayError, InvalidRequestError, NotFoundError

ERROR_CODES = (
    "acp_disabled", "requester_session_required", "runtime_policy", "subagent_policy", "thread_required",
    "target_agent_required", "agent_forbidden", "cwd_resolution_failed", "thread_binding_invalid", "spawn_failed",
    "dispatch_failed",
)  # fmt: skip


class AcpSpawnRejected(GatewayError):
    """An ACP spawn refused before anything was written."""

    def __init__(self, error_code: str, message: str, *, status: str = "error", **details: Any) -> None:
        self.status = status
        self.error_code = error_code
        self.code = "FORBIDDEN" if status == "forbidden" else "INVALID_REQUEST"
        self.http_status = 403 if status == "forbidden" else 400
        super().__init__(message, details={"code": "ACP_SPAWN_REJECTED", "errorCode": error_code, **details})

    def result(self) -> dict[str, Any]:
        """The ``sessions_spawn`` result of this refusal."""
        return {"status": self.status, "errorCode": self.error_code, "error": self.message}


class DelegateNotFoundError(NotFoundError):
    """No open hub-delegated worker with this label for this owner (or this key)."""

    def __init__(self, label: str, *, owner: str | None = None) -> None:
        super().__init__(
            f'No hub-delegated session with label "{label}" for this owner.',
            details={"code": "DELEGATE_NOT_FOUND", "label": label, **({"owner": owner} if owner else {})},
        )


class DelegateAmbiguousError(ConflictError):
    """A case-folded label names several workers of the owner (exact matching failed)."""

    def __init__(self, label: str, candidates: list[str]) -> None:
        super().__init__(
            f'Label "{label}" is ambiguous for this owner: {", ".join(candidates)}',
            details={"code": "DELEGATE_AMBIGUOUS", "label": label, "candidates": candidates},
        )


class DelegateLabelInUseError(ConflictError):
    """The owner already has an open worker with this label."""

    def __init__(self, label: str, *, owner: str) -> None:
        super().__init__(
            f'label "{label}" is already used by another hub-delegated worker of {owner}',
            details={"code": "DELEGATE_LABEL_IN_USE", "label": label, "owner": owner},
        )


class DelegateLineageError(ForbiddenError):
    """The row's lineage does not match its owner (a drifted spawnedBy/parentSessionKey)."""

    def __init__(self, key: str, field: str = "spawnedBy") -> None:
        super().__init__(
            f"hubDelegated lineage mismatch: {field} must match hubDelegated.ownerSessionKey",
            details={"code": "DELEGATE_LINEAGE_MISMATCH", "sessionKey": key, "field": field},
        )


class AcpSessionClosedError(InvalidRequestError):
    """The ACP session was closed (operator close, sweep); it never reopens."""

    retryable = False

    def __init__(self, key: str) -> None:
        super().__init__(
            f"ACP session {key} is closed; spawn a new worker instead",
            details={"code": "ACP_SESSION_CLOSED", "sessionKey": key},
        )


class DelegateCloseError(GatewayError):
    """The harness runtime could not be closed; the worker's identity was restored."""

    code = "UNAVAILABLE"
    http_status = 503
    retryable = True

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(
            f"ACP delegate close failed for {key}: {reason}",
            details={"code": "ACP_DELEGATE_CLOSE_FAILED", "sessionKey": key},
        )

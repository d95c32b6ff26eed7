"""Errors of the ACP runtime, each with a stable ``details.code``.

``details.errorCode`` carries OpenClaw's ``sessions_spawn`` ACP error code (spec-b §1.2)
where one applies, so a spawn can copy it into its result unchanged.
"""

from __future__ import annotations

from typing import Any

from openclaw_site.errors import (
    AgentTimeoutError,
    ForbiddenError,
    InvalidRequestError,
    UnavailableError,
)


def _details(code: str, error_code: str | None = None, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"code": code, **{k: v for k, v in extra.items() if v is not None}}
    if error_code:
        details["errorCode"] = error_code
    return details


class AcpDisabledError(ForbiddenError):
    """``acp.enabled`` is false."""

    def __init__(self) -> None:
        super().__init__(
            "ACP is disabled by config (acp.enabled=false)", details=_details("ACP_DISABLED", "acp_disabled")
        )


class AcpAgentForbiddenError(ForbiddenError):
    """The harness id is not in a non-empty ``acp.allowedAgents``."""

    def __init__(self, harness_id: str) -> None:
        super().__init__(
            f'ACP agent "{harness_id}" is not allowed by policy',
            details=_details("ACP_AGENT_FORBIDDEN", "agent_forbidden", agent=harness_id),
        )


class AcpAgentNotConfiguredError(InvalidRequestError):
    """No ``acp.agents.<id>`` entry (and the id is not the built-in ``offline``)."""

    def __init__(self, harness_id: str) -> None:
        super().__init__(
            f'ACP agent "{harness_id}" is not configured (acp.agents.{harness_id})',
            details=_details("ACP_AGENT_NOT_CONFIGURED", "spawn_failed", agent=harness_id),
        )


class AcpCwdError(InvalidRequestError):
    """The session cwd is not an absolute path to an existing directory."""

    def __init__(self, cwd: str) -> None:
        super().__init__(
            f"ACP cwd must be an absolute path to an existing directory: {cwd!r}",
            details=_details("ACP_CWD_INVALID", "cwd_resolution_failed", cwd=cwd),
        )


class AcpSpawnError(UnavailableError):
    """The harness could not be started, initialised or given a session."""

    def __init__(self, harness_id: str, reason: str, *, stderr: str | None = None) -> None:
        super().__init__(
            f'ACP agent "{harness_id}" failed to start: {reason}',
            details=_details("ACP_SESSION_INIT_FAILED", "spawn_failed", agent=harness_id, stderr=stderr or None),
        )


class AcpCapacityError(UnavailableError):
    """Every one of ``acp.maxConcurrentSessions`` harness processes is busy."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"all {limit} ACP harness slots are busy (acp.maxConcurrentSessions)",
            details=_details("ACP_MAX_SESSIONS", "spawn_failed", limit=limit),
        )


class AcpHarnessCrashedError(UnavailableError):
    """The harness process exited (or its pipe closed) while a request was in flight."""

    def __init__(self, harness_id: str, *, returncode: int | None, stderr: str | None = None) -> None:
        super().__init__(
            f'ACP agent "{harness_id}" exited unexpectedly (returncode {returncode})',
            details=_details("ACP_HARNESS_CRASHED", agent=harness_id, returncode=returncode, stderr=stderr or None),
        )


class AcpHandleClosedError(UnavailableError):
    """The handle was closed (idle TTL, operator close); ``ensure`` a fresh one."""

    def __init__(self, acp_session_key: str) -> None:
        super().__init__(
            f"ACP handle of {acp_session_key} is closed; ensure it again",
            details=_details("ACP_HANDLE_CLOSED", session=acp_session_key),
        )


class AcpTurnFailedError(UnavailableError):
    """The harness answered ``session/prompt`` with a JSON-RPC error."""

    retryable = False

    def __init__(self, harness_id: str, message: str, *, rpc_code: int | None = None) -> None:
        super().__init__(
            f'ACP agent "{harness_id}" failed the turn: {message}',
            details=_details("ACP_TURN_FAILED", agent=harness_id, rpcCode=rpc_code),
        )


class AcpTurnTimeoutError(AgentTimeoutError):
    """The turn did not finish within its bound (it was cancelled, or the harness killed)."""

    def __init__(self, harness_id: str, timeout_s: float) -> None:
        super().__init__(
            f'ACP agent "{harness_id}" did not finish the turn within {timeout_s:g}s',
            details=_details("ACP_TURN_TIMEOUT", agent=harness_id, timeoutSeconds=timeout_s),
        )

"""Errors of the sessions app, each with a stable wire code and ``details.code``.

Messages follow the OpenClaw gateway word for word where it has one (spec-a §2), so
clients that match on them keep working; code should match on ``details.code``.
"""

from __future__ import annotations

from openclaw_site.errors import (
    ConflictError,
    InvalidParamsError,
    InvalidRequestError,
    NotFoundError,
    UnavailableError,
)


def _details(code: str, **extra) -> dict:
    return {"code": code, **{k: v for k, v in extra.items() if v is not None}}


class SessionNotFoundError(NotFoundError):
    """No session row for a key (``No session found: <key>`` unless told otherwise)."""

    def __init__(self, key: str | None, message: str | None = None) -> None:
        super().__init__(message or f"No session found: {key}", details=_details("SESSION_NOT_FOUND", key=key))


class RunNotFoundError(NotFoundError):
    """No run with this ``runId``."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run not found: {run_id}", details=_details("RUN_NOT_FOUND", runId=run_id))


class SessionSelectorError(InvalidRequestError):
    """``sessions.resolve`` needs exactly one of key, sessionId, label."""

    def __init__(self, message: str) -> None:
        super().__init__(message, details=_details("INVALID_SELECTOR"))


class SessionExistsError(ConflictError):
    def __init__(self, key: str) -> None:
        super().__init__(f"session already exists: {key}", details=_details("SESSION_EXISTS", key=key))


class AmbiguousSessionError(ConflictError):
    """A sessionId or label selector that matches more than one session."""

    def __init__(self, message: str, keys: list[str]) -> None:
        super().__init__(message, details=_details("SESSION_AMBIGUOUS", keys=keys))


class MalformedSessionKeyError(InvalidParamsError):
    """An ``agent:`` key that does not parse (``agent:ops``)."""

    def __init__(self, key: str, method: str = "session") -> None:
        super().__init__(method, f'malformed session key "{key}"', details=_details("MALFORMED_SESSION_KEY", key=key))


class InvalidSessionPatchError(InvalidRequestError):
    """A semantic check of a field failed (``invalid thinkingLevel (use …)``, …)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, details=_details("INVALID_SESSION_FIELD", field=field))


class InvalidLabelError(InvalidSessionPatchError):
    def __init__(self, message: str) -> None:
        super().__init__(message, field="label")
        self.details["code"] = "INVALID_LABEL"


class LabelInUseError(ConflictError):
    def __init__(self, label: str) -> None:
        super().__init__(f"label already in use: {label}", details=_details("LABEL_IN_USE", label=label))


class UnknownAgentError(InvalidRequestError):
    def __init__(self, agent_id: str) -> None:
        super().__init__(f"unknown agent id: {agent_id}", details=_details("UNKNOWN_AGENT_ID", agentId=agent_id))


class AgentMismatchError(InvalidRequestError):
    def __init__(self, key: str, key_agent: str, agent_id: str) -> None:
        super().__init__(
            f'session key "{key}" belongs to agent "{key_agent}", not "{agent_id}"',
            details=_details("AGENT_MISMATCH", key=key, agentId=agent_id),
        )


class UnknownParentSessionError(InvalidRequestError):
    def __init__(self, key: str) -> None:
        super().__init__(f"unknown parent session: {key}", details=_details("UNKNOWN_PARENT_SESSION", key=key))


class SendBlockedError(InvalidRequestError):
    """The session's send policy resolves to ``deny``."""

    def __init__(self, key: str | None = None) -> None:
        super().__init__("send blocked by session policy", details=_details("SEND_BLOCKED", key=key))


class MainSessionDeleteError(InvalidRequestError):
    def __init__(self, key: str) -> None:
        super().__init__(f"Cannot delete the main session ({key}).", details=_details("MAIN_SESSION_DELETE", key=key))


class SessionActiveError(UnavailableError):
    """A run of the session could not be stopped; the caller may retry."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"Session {key} is still active; try again in a moment.",
            details=_details("SESSION_ACTIVE", key=key),
            retry_after_ms=1000,
        )


class WebchatMutationError(InvalidRequestError):
    """WebChat clients change sessions only through ``chat.send``."""

    def __init__(self, action: str) -> None:
        super().__init__(
            f"webchat clients cannot {action} sessions; use chat.send for session-scoped updates",
            details=_details("WEBCHAT_FORBIDDEN", action=action),
        )


__all__ = [
    "AgentMismatchError",
    "AmbiguousSessionError",
    "InvalidLabelError",
    "InvalidSessionPatchError",
    "LabelInUseError",
    "MainSessionDeleteError",
    "MalformedSessionKeyError",
    "RunNotFoundError",
    "SendBlockedError",
    "SessionActiveError",
    "SessionExistsError",
    "SessionNotFoundError",
    "SessionSelectorError",
    "UnknownAgentError",
    "UnknownParentSessionError",
    "WebchatMutationError",
]

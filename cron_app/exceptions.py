"""Errors of heartbeats, wake and cron, each with a stable ``details.code``."""

from __future__ import annotations

from openclaw_site.errors import InvalidParamsError, InvalidRequestError, NotFoundError


class CronJobNotFoundError(NotFoundError):
    """``invalid cron.<method> params: id not found`` (``details.code`` CRON_JOB_NOT_FOUND)."""

    def __init__(self, job_id: str, *, method: str = "cron.update") -> None:
        super().__init__(
            f"invalid {method} params: id not found", details={"code": "CRON_JOB_NOT_FOUND", "jobId": job_id}
        )


class CronJobInvalidError(InvalidParamsError):
    """A job shape the cron service refuses (schedule, target/payload pairing, delivery)."""

    def __init__(self, method: str, reason: str) -> None:
        super().__init__(method, reason, details={"code": "INVALID_CRON_JOB"})


class WakeTargetError(InvalidRequestError):
    """A wake/system-event target the gateway refuses (subagent key, agent contradiction)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, details={"code": code})

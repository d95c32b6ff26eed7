"""Queueing agent turns. The run engine (``sessions_app.engine``) executes them."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from openclaw_site.errors import InvalidRequestError

from ..events import notify_engines
from ..models import Run, Session


def run_enqueue(
    *,
    session: Session | None,
    agent_id: str,
    kind: str = Run.Kind.USER,
    input: dict[str, Any],
    run_id: str | None = None,
    timeout_s: int | None = None,
    source_session_key: str | None = None,
    parent_run_id: str | None = None,
) -> tuple[Run, bool]:
    """Insert a ``queued`` run (idempotent on ``run_id``) and wake the engines after commit.

    Returns ``(run, created)``; a replay of an existing ``run_id`` returns the recorded run.
    """
    fields: dict[str, Any] = {
        "session": session,
        "session_key": session.key if session else "",
        "agent_id": agent_id,
        "kind": kind,
        "input": input,
        "timeout_s": timeout_s,
        "source_session_key": source_session_key,
        "parent_run_id": parent_run_id,
    }
    if run_id:
        existing = Run.objects.filter(run_id=run_id).first()
        if existing is not None:
            return existing, False
        fields["run_id"] = run_id
    try:
        with transaction.atomic():
            run = Run.objects.create(**fields)
            notify_engines(run.run_id)
    except IntegrityError:
        return Run.objects.get(run_id=run_id), False
    return run, True


class RunNotActiveError(InvalidRequestError):
    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"run is not active: {run_id} ({status})", details={"code": "RUN_NOT_ACTIVE", "runId": run_id})


def run_abort(*, run: Run, reason: str = "aborted by operator") -> Run:
    """Abort ``run`` or say why not: a queued run ends at once as ``aborted``; a running one
    gets ``abort_requested`` and its engine is told. A run that already ended raises
    :class:`RunNotActiveError` and changes nothing. The abort itself is
    :func:`sessions_app.services.chat.run_abort` (events, engine notice, run hooks).
    """
    from .chat import run_abort as abort

    run.refresh_from_db()
    with transaction.atomic():
        if not abort(run=run, reason=reason):
            run.refresh_from_db(fields=["status"])
            raise RunNotActiveError(run.run_id, run.status)
    run.refresh_from_db()
    return run

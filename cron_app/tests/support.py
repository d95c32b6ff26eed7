"""Helpers of the cron_app tests: finishing runs the way the run engine does."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from sessions_app.models import Run
from sessions_app.services.run_hooks import run_finished
from sessions_app.services.sessions import transcript_append


def start_run(run: Run) -> Run:
    """Mark a queued run running (what an engine does when it takes it)."""
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING, started_at=timezone.now())
    run.refresh_from_db()
    return run


def finish_run(run: Run, *, text: str = "", status: str = Run.Status.OK, error: dict | None = None) -> Run:
    """End ``run`` with a reply ``text`` (also appended to the transcript) and fire the
    run-finished hooks, as the engine does after commit."""
    now = timezone.now()
    started = run.started_at or now - timedelta(milliseconds=250)
    Run.objects.filter(pk=run.pk).update(
        status=status, output={"text": text}, error=error, started_at=started, ended_at=now
    )
    run.refresh_from_db()
    if text and run.session is not None:
        transcript_append(session=run.session, role="assistant", content=text, run_id=run.run_id)
    run_finished(run)
    return run

"""Where a finished cron run's result goes (spec-a §5.4 "Delivery for isolated runs").

* ``announce`` (isolated jobs): the gateway has no outbound channels, so the summary is
  announced to the agent's main session as ``Cron: <summary>`` (``Cron (error): …``), a
  ``cron:<jobId>`` system event, with a heartbeat wake when ``wakeMode`` is ``now``.
* ``webhook``: the finished event is POSTed to ``delivery.to`` by a django-q2 task after
  commit (``Authorization: Bearer <cron.webhookToken>``, 10 s timeout, retried with
  backoff); every attempt and the outcome are recorded on the run.
* ``none``: internal only (``not-requested``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from urllib.parse import urlparse

import httpx
from django.conf import settings
from django.db import transaction

from openclaw_site.config import get_config
from sessions_app import keys

from ..models import CronJob, CronRun
from ..serializers import cron_run_row
from .heartbeats import heartbeat_request
from .wake import system_event_add

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 10.0


def deliver_result(*, job: CronJob | None, run: CronRun) -> None:
    """Deliver ``run`` per its job's ``delivery`` and record the status on run and job."""
    mode = ((job.delivery if job else None) or {}).get("mode", "none")
    if job is None or run.status not in (CronRun.Status.OK, CronRun.Status.ERROR):
        mode = "none"
    if mode == "announce" and job.session_target == CronJob.SessionTarget.ISOLATED:
        _announce(job, run)
    elif mode == "webhook":
        run.delivery_status = "unknown"
        transaction.on_commit(lambda: _queue_webhook(run.pk))
    else:
        run.delivery_status = "not-requested"
    run.save(update_fields=["delivered", "delivery_status", "delivery_error"])
    if job is not None:
        _remember(job, run)


def _announce(job: CronJob, run: CronRun) -> None:
    summary = run.summary or run.error or "(no output)"
    prefix = "Cron (error)" if run.status == CronRun.Status.ERROR else "Cron"
    agent_id = keys.resolve_cron_agent(cfg=get_config(), requested=job.agent_id or None)
    system_event_add(text=f"{prefix}: {summary}", agent_id=agent_id, context_key=f"cron:{job.job_id}", origin="cron")
    if job.wake_mode == CronJob.WakeMode.NOW:
        heartbeat_request(source="cron", intent="immediate", reason=f"cron:{job.job_id}", agent_id=agent_id)
    run.delivered, run.delivery_status = True, "delivered"


def _remember(job: CronJob, run: CronRun) -> None:
    job.state = {
        **(job.state or {}), "lastDelivered": run.delivered, "lastDeliveryStatus": run.delivery_status,
        "lastDeliveryError": run.delivery_error or None,
    }  # fmt: skip


def _queue_webhook(run_pk: int) -> None:
    from django_q.tasks import async_task

    async_task("cron_app.tasks.cron_webhook", run_pk, task_name=f"cron-webhook-{run_pk}")


def _retry_delays() -> tuple[float, ...]:
    return tuple(getattr(settings, "OPENCLAW_CRON_WEBHOOK_RETRY_DELAYS_S", (1.0, 5.0, 25.0)))


def _refused_host(url: str) -> str | None:
    """SSRF guard: link-local and unspecified addresses (cloud metadata) are refused;
    loopback and private networks are allowed (a self-hosted gateway's neighbours)."""
    host = urlparse(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as exc:
        return f"cannot resolve {host}: {exc}"
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_link_local or ip.is_unspecified or ip.is_multicast:
            return f"webhook host {host} resolves to a refused address {ip}"
    return None


def cron_webhook_deliver(*, run_pk: int) -> CronRun:
    """POST the run's finished event to its job's webhook, retrying with backoff; the
    outcome (``delivered``/``not-delivered``, error, attempts) is stored on the run."""
    run = CronRun.objects.select_related("job").get(pk=run_pk)
    url = ((run.job.delivery if run.job else None) or {}).get("to", "")
    error = _refused_host(url) if url else "the job has no webhook URL"
    attempts = 0
    if error is None:
        error, attempts = _post_with_retries(url, {"action": "finished", **cron_run_row(run)})
    return _record_webhook(run, error, attempts)


def _post_with_retries(url: str, body: dict) -> tuple[str | None, int]:
    token = get_config().cron.get("webhookToken")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    delays = (0.0, *_retry_delays())
    error = None
    for attempt, delay in enumerate(delays, start=1):
        time.sleep(delay)
        try:
            response = httpx.post(url, json=body, headers=headers, timeout=WEBHOOK_TIMEOUT_S)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
            continue
        if response.is_success:
            return None, attempt
        error = f"HTTP {response.status_code}"
    return error, len(delays)


def _record_webhook(run: CronRun, error: str | None, attempts: int) -> CronRun:
    run.delivered = error is None
    run.delivery_status = "delivered" if error is None else "not-delivered"
    run.delivery_error = error or ""
    run.delivery_attempts = attempts
    run.save(update_fields=["delivered", "delivery_status", "delivery_error", "delivery_attempts"])
    if error:
        logger.warning("cron webhook for run %s failed after %s attempts: %s", run.pk, attempts, error)
    if run.job_id:
        job = CronJob.objects.get(pk=run.job_id)
        _remember(job, run)
        job.save(update_fields=["state", "updated_at"])
    return run

"""Cron job CRUD: the rules of spec-a §5.1 checked on every add and update.

``sessionTarget`` main ⇔ a ``systemEvent`` payload, isolated ⇔ ``agentTurn``; ``announce``
only for isolated jobs (their default), ``webhook`` needs an http(s) ``to``; ``at`` jobs
default to ``deleteAfterRun``. A schedule or enabled change recomputes ``next_run_at``.
Removing a job drops its queued ``cron:<id>`` system events. Every change is a ``cron``
event (``added``/``updated``/``removed``) after commit.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from django.db import transaction
from django.utils import timezone

from openclaw_site.config import get_config
from sessions_app import keys
from sessions_app.events import BROADCAST_GROUP, publish_on_commit
from sessions_app.services.system_events import system_events_drop_by_context_key

from ..exceptions import CronJobInvalidError, CronJobNotFoundError
from ..models import CronJob
from ..schedules import first_slot, from_ms, is_valid_cron, is_valid_zone, parse_at
from ..serializers import cron_job_row, ms

TARGET_PAYLOAD = {"main": "systemEvent", "isolated": "agentTurn"}
DELIVERY_MODES = ("none", "announce", "webhook")
CATCH_UP = ("skip", "once", "all")


def publish_cron_event(job_id: str, action: str, **fields: Any) -> None:
    payload = {"jobId": job_id, "action": action, **{k: v for k, v in fields.items() if v is not None}}
    publish_on_commit(BROADCAST_GROUP, "cron", payload)


# --- validation -------------------------------------------------------------------------


def _fail(method: str, reason: str) -> None:
    raise CronJobInvalidError(method, reason)


def validate_schedule(schedule: Any, method: str) -> dict:
    if not isinstance(schedule, dict):
        _fail(method, "at /schedule: must be object")
    kind = schedule.get("kind")
    if kind == "at":
        _check_at(schedule, method)
    elif kind == "every":
        _check_int(schedule, "everyMs", 1, method)
        _check_int(schedule, "anchorMs", 0, method, required=False)
    elif kind == "cron":
        _check_cron(schedule, method)
    else:
        _fail(method, 'at /schedule/kind: must be one of "at", "every", "cron"')
    return dict(schedule)


def _check_at(schedule: dict, method: str) -> None:
    try:
        parse_at(str(schedule.get("at", "")))
    except ValueError:
        _fail(method, "at /schedule/at: must be an ISO-8601 date-time")


def _check_int(schedule: dict, name: str, minimum: int, method: str, *, required: bool = True) -> None:
    value = schedule.get(name)
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(method, f"at /schedule/{name}: must be an integer >= {minimum}")


def _check_cron(schedule: dict, method: str) -> None:
    expr = schedule.get("expr")
    if not isinstance(expr, str) or not is_valid_cron(expr):
        _fail(method, "at /schedule/expr: must be a 5- or 6-field cron expression")
    tz = schedule.get("tz")
    if tz is not None and (not isinstance(tz, str) or not is_valid_zone(tz)):
        _fail(method, f"at /schedule/tz: unknown time zone {tz!r}")
    _check_int(schedule, "staggerMs", 0, method, required=False)


def _validate_payload(target: str, payload: Any, method: str) -> None:
    if not isinstance(payload, dict):
        _fail(method, "at /payload: must be object")
    wanted = TARGET_PAYLOAD.get(target)
    if wanted is None:
        _fail(method, 'at /sessionTarget: must be "main" or "isolated"')
    if payload.get("kind") != wanted:
        _fail(method, f'sessionTarget "{target}" requires payload.kind "{wanted}"')
    field = "text" if wanted == "systemEvent" else "message"
    if not isinstance(payload.get(field), str) or not payload[field].strip():
        _fail(method, f"at /payload/{field}: must be a non-empty string")


def _validate_delivery(target: str, delivery: Any, method: str) -> dict:
    if delivery in (None, {}):
        return {"mode": "announce"} if target == "isolated" else {}
    if not isinstance(delivery, dict) or delivery.get("mode") not in DELIVERY_MODES:
        _fail(method, 'at /delivery/mode: must be one of "none", "announce", "webhook"')
    if delivery["mode"] == "announce" and target != "isolated":
        _fail(method, 'delivery mode "announce" is only for sessionTarget "isolated"')
    if delivery["mode"] == "webhook":
        url = urlparse(str(delivery.get("to") or ""))
        if url.scheme not in ("http", "https") or not url.netloc:
            _fail(method, "at /delivery/to: webhook delivery needs an http(s) URL")
    return dict(delivery)


def validate_job(data: dict[str, Any], method: str) -> dict[str, Any]:
    """The normalised job fields of a create shape (or a merged update); raises
    :class:`CronJobInvalidError` naming the first problem."""
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        _fail(method, "at /name: must be a non-empty string")
    payload = data.get("payload")
    target = data.get("sessionTarget") or TARGET_PAYLOAD_BY_KIND.get((payload or {}).get("kind"), "main")
    schedule = validate_schedule(data.get("schedule"), method)
    _validate_payload(target, payload, method)
    wake_mode = data.get("wakeMode") or "now"
    if wake_mode not in ("now", "next-heartbeat"):
        _fail(method, 'at /wakeMode: must be "now" or "next-heartbeat"')
    catch_up = data.get("catchUp") or "once"
    if catch_up not in CATCH_UP:
        _fail(method, 'at /catchUp: must be one of "skip", "once", "all"')
    delete_after = data.get("deleteAfterRun")
    return {
        "name": name.strip(), "description": (data.get("description") or "").strip(),
        "enabled": data.get("enabled", True) is not False, "agent_id": _agent(data.get("agentId")),
        "session_key": (data.get("sessionKey") or "").strip() or None, "schedule": schedule,
        "session_target": target, "wake_mode": wake_mode, "payload": dict(payload), "catch_up": catch_up,
        "delivery": _validate_delivery(target, data.get("delivery"), method),
        "delete_after_run": schedule["kind"] == "at" if delete_after is None else bool(delete_after),
    }  # fmt: skip


TARGET_PAYLOAD_BY_KIND = {kind: target for target, kind in TARGET_PAYLOAD.items()}


def _agent(value: Any) -> str:
    """A configured agent id, or "" (= the default agent at run time)."""
    if not isinstance(value, str) or not value.strip():
        return ""
    cfg = get_config()
    return keys.resolve_cron_agent(cfg=cfg, requested=value)


# --- CRUD -------------------------------------------------------------------------------


def cron_job_get(*, job_id: str, method: str = "cron.update") -> CronJob:
    job = CronJob.objects.filter(job_id=(job_id or "").strip()).first()
    if job is None:
        raise CronJobNotFoundError(job_id, method=method)
    return job


def _schedule_next(job: CronJob) -> None:
    now = timezone.now()
    created = job.created_at or now
    job.next_run_at = (
        first_slot(schedule=job.schedule, now=now, job_id=job.job_id, created_at=created) if job.enabled else None
    )


def cron_job_add(*, data: dict[str, Any]) -> CronJob:
    """Create a job from the ``cron.add`` shape; an ``every`` schedule is anchored now."""
    fields = validate_job(data, "cron.add")
    if fields["schedule"]["kind"] == "every" and fields["schedule"].get("anchorMs") is None:
        fields["schedule"]["anchorMs"] = ms(timezone.now())
    with transaction.atomic():
        job = CronJob(**fields)
        _schedule_next(job)
        job.save()
        publish_cron_event(job.job_id, "added", nextRunAtMs=ms(job.next_run_at))
    return job


def _merged(job: CronJob, patch: dict[str, Any]) -> dict[str, Any]:
    current = cron_job_row(job)
    merged = {**current, **{k: v for k, v in patch.items() if k not in ("payload", "delivery", "state")}}
    if isinstance(patch.get("payload"), dict):
        same_kind = patch["payload"].get("kind", current["payload"].get("kind")) == current["payload"].get("kind")
        merged["payload"] = {**current["payload"], **patch["payload"]} if same_kind else patch["payload"]
    if "delivery" in patch:
        merged["delivery"] = {**current.get("delivery", {}), **(patch["delivery"] or {})} if patch["delivery"] else {}
    for name in ("agentId", "sessionKey", "description"):
        if name in patch and patch[name] is None:
            merged[name] = None
    return merged


def cron_job_update(*, job_id: str, patch: dict[str, Any]) -> CronJob:
    """Apply a ``cron.update`` patch (any job field; ``payload`` keeps its kind,
    ``delivery`` is merged, ``state.nextRunAtMs`` may be set); returns the job."""
    with transaction.atomic():
        job = CronJob.objects.select_for_update().filter(job_id=(job_id or "").strip()).first()
        if job is None:
            raise CronJobNotFoundError(job_id, method="cron.update")
        before = (job.schedule, job.enabled)
        fields = validate_job(_merged(job, patch), "cron.update")
        for name, value in fields.items():
            setattr(job, name, value)
        if (job.schedule, job.enabled) != before:
            _schedule_next(job)
        _apply_state_patch(job, patch.get("state"))
        job.save()
        publish_cron_event(job.job_id, "updated", nextRunAtMs=ms(job.next_run_at))
    return job


def _apply_state_patch(job: CronJob, state: Any) -> None:
    if not isinstance(state, dict):
        return
    if "nextRunAtMs" in state:
        value = state["nextRunAtMs"]
        job.next_run_at = from_ms(int(value)) if isinstance(value, (int, float)) else None
    if "consecutiveErrors" in state and isinstance(state["consecutiveErrors"], int):
        job.consecutive_errors = max(0, state["consecutiveErrors"])


def cron_job_set_enabled(*, job_id: str, enabled: bool) -> CronJob:
    return cron_job_update(job_id=job_id, patch={"enabled": enabled})


def cron_job_remove(*, job_id: str) -> dict[str, Any]:
    """Delete the job (its run log stays) and its queued ``cron:<id>`` system events."""
    with transaction.atomic():
        job = CronJob.objects.select_for_update().filter(job_id=(job_id or "").strip()).first()
        if job is None:
            raise CronJobNotFoundError(job_id, method="cron.remove")
        _delete(job)
    return {"ok": True, "removed": True}


def _delete(job: CronJob) -> None:
    system_events_drop_by_context_key(context_key=f"cron:{job.job_id}")
    job_id = job.job_id
    job.delete()
    publish_cron_event(job_id, "removed")

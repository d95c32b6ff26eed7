"""Gateway RPC methods of wake, system events, heartbeats and cron (spec-a §4.5, §4.6, §5.5).

Params schemas follow OpenClaw's: ``wake`` is open (external senders may attach
metadata), the cron methods are closed. Each method validates, then calls one service
or selector; errors are ``GatewayError`` subclasses with a stable ``details.code``.
"""

from __future__ import annotations

from typing import Any

from openclaw_site.errors import InvalidParamsError, InvalidRequestError
from sessions_app import schema as s
from sessions_app.rpc import ADMIN, READ, WRITE, RpcContext, rpc_method

from . import selectors, services
from .serializers import cron_job_row
from .services.runner import cron_enabled

NON_EMPTY = s.string(min_length=1)

# --- wake and system events -------------------------------------------------------------

WAKE_SCHEMA = s.obj(
    {"mode": s.ANY, "text": NON_EMPTY, "sessionKey": NON_EMPTY, "agentId": NON_EMPTY},
    required=("mode", "text"),
    closed=False,
)


@rpc_method("wake", scope=WRITE, schema=WAKE_SCHEMA)
def wake(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    """Queue a system event and wake its session; ``{"ok": true}``."""
    if params["mode"] not in ("now", "next-heartbeat"):
        # Ajv's wording for the schema's anyOf of two constants.
        raise InvalidParamsError("wake", "at /mode: must be equal to constant; at /mode: must match a schema in anyOf")
    return services.wake(
        mode=params["mode"], text=params["text"], session_key=params.get("sessionKey"), agent_id=params.get("agentId")
    )


_PRESENCE = {name: s.ANY for name in (
    "deviceId", "instanceId", "host", "ip", "mode", "version", "platform", "deviceFamily", "modelIdentifier",
    "lastInputSeconds", "reason", "roles", "scopes", "tags",
)}  # fmt: skip
SYSTEM_EVENT_SCHEMA = s.obj(
    {"text": s.string(), "sessionKey": NON_EMPTY, "agentId": NON_EMPTY, "wake": s.boolean(), **_PRESENCE},
    required=("text",),
    closed=False,
)


@rpc_method("system-event", scope=ADMIN, schema=SYSTEM_EVENT_SCHEMA)
def system_event(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    """Queue a system event (``Node:`` lines are presence); ``wake: true`` wakes now."""
    if not params["text"].strip():
        raise InvalidRequestError("text required", details={"code": "TEXT_REQUIRED"})
    return services.system_event_post(
        text=params["text"], session_key=params.get("sessionKey"), agent_id=params.get("agentId"),
        wake_now=bool(params.get("wake")), host=params.get("host"), instance_id=params.get("instanceId"),
    )  # fmt: skip


@rpc_method("last-heartbeat", scope=READ, schema=s.obj({}))
def last_heartbeat(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any] | None:
    return selectors.heartbeat_last()


@rpc_method("set-heartbeats", scope=ADMIN, schema=s.obj({"enabled": s.boolean()}, required=("enabled",)))
def set_heartbeats(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "enabled": services.heartbeats_set_enabled(enabled=params["enabled"])}


# --- cron -------------------------------------------------------------------------------

_PAGE = {"limit": s.integer(minimum=1, maximum=200), "offset": s.integer(minimum=0)}
_ID = {"id": NON_EMPTY, "jobId": NON_EMPTY}


def _job_id(method: str, params: dict[str, Any]) -> str:
    job_id = params.get("jobId") or params.get("id")
    if not job_id:
        raise InvalidParamsError(method, "must have required property 'id'")
    return job_id


@rpc_method("cron.list", scope=READ, schema=s.obj({
    "includeDisabled": s.boolean(), **_PAGE, "query": s.string(),
    "enabled": s.string(enum=("all", "enabled", "disabled")),
    "sortBy": s.string(enum=("nextRunAtMs", "updatedAtMs", "name")), "sortDir": s.string(enum=("asc", "desc")),
}))  # fmt: skip
def cron_list(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    return selectors.cron_job_list(
        include_disabled=bool(params.get("includeDisabled")), enabled=params.get("enabled"),
        query=params.get("query"), sort_by=params.get("sortBy", "nextRunAtMs"), sort_dir=params.get("sortDir", "asc"),
        limit=params.get("limit", 200), offset=params.get("offset", 0),
    )  # fmt: skip


@rpc_method("cron.status", scope=READ, schema=s.obj({}))
def cron_status(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    return selectors.cron_status(enabled=cron_enabled())


_JOB_FIELDS = {
    "name": NON_EMPTY, "description": s.string(nullable=True), "enabled": s.boolean(),
    "agentId": s.string(nullable=True), "sessionKey": s.string(nullable=True), "deleteAfterRun": s.boolean(),
    "schedule": {"type": "object"}, "sessionTarget": s.string(enum=("main", "isolated")),
    "wakeMode": s.string(enum=("now", "next-heartbeat")), "payload": {"type": "object"},
    "delivery": {"type": "object", "nullable": True}, "catchUp": s.string(enum=("skip", "once", "all")),
}  # fmt: skip


@rpc_method("cron.add", scope=ADMIN, schema=s.obj(_JOB_FIELDS, required=("name", "schedule", "payload")))
def cron_add(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    return cron_job_row(services.cron_job_add(data=params))


@rpc_method("cron.update", scope=ADMIN, schema=s.obj(
    {**_ID, "patch": s.obj({**_JOB_FIELDS, "state": {"type": "object"}})}, required=("patch",)
))  # fmt: skip
def cron_update(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    return cron_job_row(services.cron_job_update(job_id=_job_id("cron.update", params), patch=params["patch"]))


@rpc_method("cron.remove", scope=ADMIN, schema=s.obj(_ID))
def cron_remove(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    return services.cron_job_remove(job_id=_job_id("cron.remove", params))


@rpc_method("cron.run", scope=ADMIN, schema=s.obj({**_ID, "mode": s.string(enum=("force", "due"))}))
def cron_run(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    job = services.cron_job_get(job_id=_job_id("cron.run", params), method="cron.run")
    return services.cron_job_run(job=job, mode=params.get("mode", "force"))


_STATUSES = s.string(enum=("all", "running", "ok", "error", "skipped", "missed"))
_DELIVERY = s.string(enum=("delivered", "not-delivered", "unknown", "not-requested"))


@rpc_method("cron.runs", scope=READ, schema=s.obj({
    **_ID, **_PAGE, "status": _STATUSES, "statuses": s.array(_STATUSES), "deliveryStatus": _DELIVERY,
    "deliveryStatuses": s.array(_DELIVERY), "query": s.string(), "sortDir": s.string(enum=("asc", "desc")),
    "scope": s.string(enum=("job", "all")),
}))  # fmt: skip
def cron_runs(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    # As OpenClaw 2026.9.6: without a scope, an id means "job" and no id means "all".
    scope = params.get("scope") or ("job" if params.get("id") or params.get("jobId") else "all")
    job_id = None if scope == "all" else _job_id("cron.runs", params)
    statuses = [v for v in [*(params.get("statuses") or []), params.get("status")] if v and v != "all"]
    deliveries = [v for v in [*(params.get("deliveryStatuses") or []), params.get("deliveryStatus")] if v]
    return selectors.cron_run_list(
        job_id=job_id, statuses=statuses, delivery_statuses=deliveries, query=params.get("query"),
        sort_dir=params.get("sortDir", "desc"), limit=params.get("limit", 50), offset=params.get("offset", 0),
    )  # fmt: skip

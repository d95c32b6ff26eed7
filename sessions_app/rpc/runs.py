"""RPC methods that run turns: agent, agent.wait, chat.send/abort, sessions.send/steer/abort,
sessions.messages.subscribe/unsubscribe, tools.invoke (spec-a §6.4, §7)."""

from __future__ import annotations

import uuid
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from openclaw_site.errors import AgentTimeoutError, InvalidRequestError, MissingScopeError, UnavailableError

from .. import schema as s
from ..engine.waiters import run_wait
from ..events import now_ms, session_group
from ..models import Run, Session, SessionEvent
from ..services.chat import SendResult, chat_send, run_abort, session_abort
from ..tool_policy import tool_policy_for_key
from . import ADMIN, READ, WRITE, RpcContext, respond_interim, rpc_method

REPLAY_LIMIT = 10_000
FINAL_GRACE_S = 30

AGENT_SCHEMA = s.obj(
    {
        "message": s.string(), "idempotencyKey": s.string(min_length=1), "agentId": s.string(),
        "provider": s.string(), "model": s.string(), "to": s.string(), "replyTo": s.string(),
        "sessionId": s.string(), "sessionKey": s.string(), "thinking": s.string(), "deliver": s.boolean(),
        "bestEffortDeliver": s.boolean(), "attachments": s.array(), "channel": s.string(),
        "replyChannel": s.string(), "accountId": s.string(), "replyAccountId": s.string(), "threadId": s.string(),
        "groupId": s.string(), "groupChannel": s.string(), "groupSpace": s.string(), "timeout": s.integer(minimum=0),
        "lane": s.string(), "extraSystemPrompt": s.string(), "inputProvenance": {"type": "object"},
        "label": s.string(), "spawnedBy": s.string(), "internalEvents": s.ANY, "bootstrapContextMode": s.string(),
        "voiceWakeTrigger": s.ANY,
    },
    required=("message", "idempotencyKey"),
)  # fmt: skip
CHAT_SEND_SCHEMA = s.obj(
    {
        "sessionKey": s.string(min_length=1), "message": s.string(), "thinking": s.string(),
        "deliver": s.boolean(), "attachments": s.array(), "timeoutMs": s.integer(minimum=0),
        "idempotencyKey": s.string(min_length=1),
    },
    required=("sessionKey", "message", "idempotencyKey"),
)  # fmt: skip
SESSIONS_SEND_SCHEMA = s.obj(
    {
        "key": s.string(min_length=1), "message": s.string(), "thinking": s.string(), "attachments": s.array(),
        "timeoutMs": s.integer(minimum=0), "idempotencyKey": s.string(min_length=1),
    },
    required=("key", "message"),
)  # fmt: skip


# --- resolving the target -------------------------------------------------------------


def _config():
    from openclaw_site.config import get_config

    return get_config()


def _unknown_agent(agent_id: str) -> InvalidRequestError:
    return InvalidRequestError(f'unknown agent id "{agent_id}"', details={"code": "UNKNOWN_AGENT_ID"})


def canonical_key(raw: str, method: str = "chat.send") -> tuple[str, str]:
    """``(canonical key, agent id)`` of a client key (spec-a §1.3, §3.3); the key's agent
    must be configured."""
    from ..keys import parse_agent_session_key
    from ..selectors import canonical_key as store_key

    cfg = _config()
    key = store_key(raw, method=method)
    if not key:
        raise InvalidRequestError("sessionKey is required")
    parsed = parse_agent_session_key(key)
    if parsed and not cfg.has_agent(parsed.agent_id):
        raise _unknown_agent(parsed.agent_id)
    return key, cfg.agent(parsed.agent_id).id if parsed else cfg.default_agent_id()


def agent_target(*, agent_id: str | None, session_key: str | None) -> tuple[str, str]:
    """The ``agent`` RPC's session: the key (checked against ``agentId``), else the agent's
    main key, else the default agent's main session."""
    cfg = _config()
    if agent_id is not None and not cfg.has_agent(agent_id):
        raise _unknown_agent(agent_id)
    wanted = cfg.agent(agent_id).id if agent_id is not None else None
    if session_key and session_key.strip():
        key, key_agent = canonical_key(session_key, "agent")
        if wanted is not None and key != "global" and key_agent != wanted:
            raise InvalidRequestError(f'agent "{wanted}" does not match session key agent "{key_agent}"',
                                      details={"code": "AGENT_MISMATCH", "key": key, "agentId": wanted})
        return key, wanted or key_agent
    if wanted is not None:
        return cfg.agent_main_session_key(wanted), wanted
    return cfg.main_session_key(), cfg.default_agent_id()


# --- payloads -------------------------------------------------------------------------


def _ms(value) -> int | None:
    return int(value.timestamp() * 1000) if value else None


def send_payload(result: SendResult) -> dict[str, Any]:
    """``chat.send``'s answer: started, in_flight, a replayed terminal status, or a command's."""
    if result.payload:
        return result.payload
    run = result.run
    if result.status == Run.Status.ERROR:
        message = (run.error or {}).get("message") or "run failed"
        raise UnavailableError(message, details={"runId": run.run_id, "status": "error"}, retryable=False)
    return {"runId": run.run_id, "status": result.status}


def wait_payload(run_id: str, run: Run | None) -> dict[str, Any]:
    """``agent.wait``'s answer; an aborted run reads ``timeout`` (lifecycle end + aborted)."""
    if run is None or not run.is_terminal:
        return {"runId": run_id, "status": "timeout"}
    status = {Run.Status.ABORTED: "timeout"}.get(run.status, run.status)
    payload = {"runId": run_id, "status": status, "startedAt": _ms(run.started_at), "endedAt": _ms(run.ended_at)}
    if run.error:
        payload["error"] = run.error.get("message")
    return payload


def agent_final(run: Run) -> dict[str, Any]:
    """The second ``agent`` response (or an error for a run that did not end ``ok``)."""
    if not run.is_terminal:
        raise AgentTimeoutError("agent run still running", details={"runId": run.run_id, "status": "timeout"})
    text = (run.output or {}).get("text") or ""
    if run.status != Run.Status.OK:
        summary = (run.error or {}).get("message") or run.status
        raise UnavailableError(summary, details={"runId": run.run_id, "status": run.status, "summary": summary},
                               retryable=False)  # fmt: skip
    meta = {"durationMs": run.duration_ms, "stopReason": (run.output or {}).get("stopReason"), "usage": run.usage}
    return {"runId": run.run_id, "status": "ok", "summary": "completed",
            "result": {"payloads": [{"text": text}] if text else [], "meta": meta}}  # fmt: skip


# --- methods --------------------------------------------------------------------------


@rpc_method("agent", scope=WRITE, schema=AGENT_SCHEMA)
async def agent(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    """Run a turn: a first response ``{runId, status: "accepted", acceptedAt}``, then the final one."""
    key, agent_id = await sync_to_async(agent_target)(agent_id=params.get("agentId"), session_key=params.get("sessionKey"))
    if params["message"].strip().lower().startswith(("/new", "/reset")) and not ctx.has_scope(ADMIN):
        raise MissingScopeError(ADMIN)
    await _join(ctx, key)
    extra = {name: params[name] for name in ("extraSystemPrompt", "inputProvenance", "label") if name in params}
    result = await database_sync_to_async(chat_send)(
        session_key=key, message=params["message"], idempotency_key=params["idempotencyKey"], agent_id=agent_id,
        channel=params.get("channel") or "agent", timeout_s=params.get("timeout") or None, extra_input=extra,
    )  # fmt: skip
    run = result.run
    if result.cached and not run.is_terminal:
        return {"runId": run.run_id, "status": "accepted"}
    if not result.cached:
        await respond_interim({"runId": run.run_id, "status": "accepted", "acceptedAt": now_ms()})
    timeout_s = (run.timeout_s or await sync_to_async(_agent_timeout)(agent_id)) + FINAL_GRACE_S
    return agent_final(await run_wait(run.run_id, timeout_s) or run)


def _agent_timeout(agent_id: str) -> int:
    agent = _config().agent(agent_id)
    return agent.timeout_seconds if agent else 600


@rpc_method("agent.wait", scope=WRITE, schema=s.obj(
    {"runId": s.string(min_length=1), "timeoutMs": s.integer(minimum=0)}, required=("runId",)))
async def agent_wait(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    """Wait ≤ timeoutMs (30 000) for a run's end; a timeout leaves the run running."""
    run = await run_wait(params["runId"], params.get("timeoutMs", 30_000) / 1000)
    return wait_payload(params["runId"], run)


@rpc_method("chat.send", scope=WRITE, schema=CHAT_SEND_SCHEMA)
async def chat_send_method(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    """``{runId, status: "started"}``; the caller's connection receives the session's events."""
    key, agent_id = await sync_to_async(canonical_key)(params["sessionKey"])
    await _join(ctx, key)
    result = await database_sync_to_async(chat_send)(
        session_key=key, message=params["message"], idempotency_key=params["idempotencyKey"], agent_id=agent_id,
        timeout_s=_seconds(params.get("timeoutMs")),
    )  # fmt: skip
    return send_payload(result)


def _seconds(timeout_ms: int | None) -> int | None:
    return max(1, -(-timeout_ms // 1000)) if timeout_ms else None


async def _join(ctx: RpcContext, key: str) -> None:
    if ctx.subscribe is not None:
        await ctx.subscribe(session_group(key))


def _session_or_error(key: str) -> Session:
    from ..exceptions import SessionNotFoundError

    session = Session.objects.filter(key=key).first()
    if session is None:
        raise SessionNotFoundError(key, f"session not found: {key}")
    return session


@rpc_method("chat.abort", scope=WRITE, schema=s.obj(
    {"sessionKey": s.string(min_length=1), "runId": s.string(min_length=1)}, required=("sessionKey",)))
def chat_abort(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    """Abort ``runId`` or, without it, the session's queued then running turns."""
    key, _ = canonical_key(params["sessionKey"], "chat.abort")
    run_id = params.get("runId")
    if run_id:
        run = Run.objects.filter(run_id=run_id).first()
        if run is not None and run.session_key != key:
            raise InvalidRequestError("runId does not match sessionKey")
    session = Session.objects.filter(key=key).first()
    run_ids = session_abort(session=session, run_id=run_id) if session is not None else []
    return {"ok": True, "aborted": bool(run_ids), "runIds": run_ids}


async def _sessions_send(ctx: RpcContext, params: dict[str, Any], *, queue_mode: str | None) -> tuple[dict, SendResult]:
    key, agent_id = await sync_to_async(canonical_key)(params["key"], "sessions.send")
    await database_sync_to_async(_session_or_error)(key)
    await _join(ctx, key)
    result = await database_sync_to_async(chat_send)(
        session_key=key, message=params["message"], idempotency_key=params.get("idempotencyKey") or str(uuid.uuid4()),
        agent_id=agent_id, timeout_s=_seconds(params.get("timeoutMs")), queue_mode=queue_mode,
    )  # fmt: skip
    return {**send_payload(result), "key": key}, result


@rpc_method("sessions.send", scope=WRITE, schema=SESSIONS_SEND_SCHEMA)
async def sessions_send(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    """``chat.send`` into an existing session (``idempotencyKey`` generated if absent)."""
    payload, _ = await _sessions_send(ctx, params, queue_mode=None)
    return payload


@rpc_method("sessions.steer", scope=WRITE, schema=SESSIONS_SEND_SCHEMA)
async def sessions_steer(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    """``sessions.send`` that first aborts the active run (``interruptedActiveRun: true``)."""
    busy = await database_sync_to_async(_has_running_run)(params["key"])
    payload, _ = await _sessions_send(ctx, params, queue_mode="interrupt")
    return {**payload, "interruptedActiveRun": True} if busy else payload


def _has_running_run(raw_key: str) -> bool:
    key, _ = canonical_key(raw_key)
    return Run.objects.filter(session__key=key, status=Run.Status.RUNNING).exists()


@rpc_method("sessions.abort", scope=WRITE, schema=s.obj(
    {"key": s.string(min_length=1), "runId": s.string(min_length=1)}))
def sessions_abort(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    """Abort ``runId`` or the session's running turn → ``{ok, abortedRunId, status}``."""
    if not params.get("key") and not params.get("runId"):
        raise InvalidRequestError("invalid sessions.abort params: key or runId is required")
    runs = Run.objects.filter(status__in=[Run.Status.QUEUED, Run.Status.RUNNING])
    if params.get("runId"):
        runs = runs.filter(run_id=params["runId"])
    if params.get("key"):
        key, _ = canonical_key(params["key"], "sessions.abort")
        runs = runs.filter(session_key=key)
        if not params.get("runId"):
            runs = runs.filter(status=Run.Status.RUNNING)
    run = runs.order_by("created_at").first()
    if run is None or not run_abort(run=run):
        return {"ok": True, "abortedRunId": None, "status": "no-active-run"}
    return {"ok": True, "abortedRunId": run.run_id, "status": "aborted"}


@rpc_method("sessions.messages.subscribe", scope=READ, schema=s.obj(
    {"key": s.string(min_length=1), "afterSeq": s.integer(minimum=0)}, required=("key",)))
async def sessions_messages_subscribe(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    """Receive the session's events; with ``afterSeq`` first those stored after it, in order."""
    key, _ = await sync_to_async(canonical_key)(params["key"], "sessions.messages.subscribe")
    after = params.get("afterSeq")
    if after is None or ctx.replay_session is None:
        await _join(ctx, key)
        return {"subscribed": True, "key": key, "replayed": 0}

    async def load() -> list[dict[str, Any]]:
        return await database_sync_to_async(_events_after)(key, after)

    replayed = await ctx.replay_session(key, session_group(key), load)
    return {"subscribed": True, "key": key, "replayed": replayed}


def _events_after(key: str, after: int) -> list[dict[str, Any]]:
    rows = SessionEvent.objects.filter(session__key=key, seq__gt=after).order_by("seq")[:REPLAY_LIMIT]
    return list(rows.values("seq", "event", "payload"))


@rpc_method("sessions.messages.unsubscribe", scope=READ, schema=s.obj({"key": s.string(min_length=1)}, required=("key",)))
async def sessions_messages_unsubscribe(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    key, _ = await sync_to_async(canonical_key)(params["key"])
    if ctx.unsubscribe is not None:
        await ctx.unsubscribe(session_group(key))
    return {"subscribed": False, "key": key}


@rpc_method("tools.invoke", scope=ADMIN, schema=s.obj(
    {"sessionKey": s.string(min_length=1), "tool": s.string(min_length=1), "args": {"type": "object"}},
    required=("sessionKey", "tool")))
async def tools_invoke(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    """Run an agent tool as the session's agent would (no run), under the session's tool
    policy (a leaf sub-agent cannot call ``sessions_spawn``) → ``{ok, tool, result}``."""
    from ..tools import ToolContext, invoke_tool

    key, agent_id = await sync_to_async(canonical_key)(params["sessionKey"], "tools.invoke")
    policy = await database_sync_to_async(tool_policy_for_key)(key)
    ctx = ToolContext(session_key=key, agent_id=agent_id, policy=policy)
    result = await invoke_tool(ctx, params["tool"], params.get("args") or {})
    return {"ok": True, "tool": params["tool"], "result": result}

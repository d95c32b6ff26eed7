"""Agent tools ``sessions_spawn`` and ``subagents`` (spec-b §1, §2.9).

Thin doors: parse the model's arguments, call one service in a worker thread, return
its result. ``sessions_spawn`` refuses channel-delivery keys with an input error (the
model should use ``message`` or ``sessions_send``); other refusals come back as
``{status: "forbidden"|"error", error}`` results the model can read.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from openclaw_site.errors import InvalidRequestError

from ..schema import boolean, integer, obj, string
from ..services import subagent_control as control
from ..services.subagents import REJECTED_SPAWN_KEYS, spawn_runtime, subagent_spawn
from . import ToolContext, agent_tool

SPAWN_PARAMETERS = obj(
    {
        "task": string(min_length=1),
        "label": string(),
        "runtime": string(enum=("subagent", "acp")),
        "agentId": string(),
        "model": string(),
        "thinking": string(),
        "cwd": string(),
        "runTimeoutSeconds": {"type": "number", "minimum": 0},
        "timeoutSeconds": {"type": "number", "minimum": 0},
        "thread": boolean(),
        "mode": string(enum=("run", "session")),
        "cleanup": string(enum=("delete", "keep")),
        "sandbox": string(enum=("inherit", "require")),
        "streamTo": string(enum=("parent",)),
        "delegate": boolean(),  # runtime "acp": a hub-delegated persistent worker (acp_app)
        "resumeSessionId": string(),
    },
    required=("task",),
    closed=False,  # channel-delivery keys get their own message, not "additional properties"
)

SUBAGENTS_PARAMETERS = obj(
    {
        "action": string(enum=("list", "kill", "steer", "info")),
        "target": string(),
        "message": string(),
        "recentMinutes": integer(minimum=1, maximum=1440),
    }
)


def spawn_args(args: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of ``subagent_spawn`` for tool/REST arguments; raises an input
    error for channel-delivery keys (spec-b §1.1)."""
    for key in REJECTED_SPAWN_KEYS:
        if key in args:
            raise InvalidRequestError(
                f'sessions_spawn does not support "{key}". Use "message" or "sessions_send" for channel delivery.',
                details={"code": "UNSUPPORTED_SPAWN_KEY", "key": key},
            )
    timeout = args.get("runTimeoutSeconds", args.get("timeoutSeconds"))
    return {
        "task": args.get("task") or "", "label": args.get("label"), "agent_id": args.get("agentId"),
        "model": args.get("model"), "run_timeout_seconds": int(timeout) if timeout is not None else None,
        "cleanup": args.get("cleanup") or "keep", "mode": args.get("mode") or ("session" if args.get("thread") else "run"),
        "cwd": args.get("cwd"), "thread": bool(args.get("thread")),
    }  # fmt: skip


def spawn_from_args(*, requester_session_key: str, requester_run_id: str | None, args: dict[str, Any],
                    expects_completion_message: bool = True) -> dict:
    """Dispatch a spawn by runtime (``subagent`` here; ``acp`` when a runtime registered it).
    The agent tool always expects a completion message (spec-b §1.1); operator doors may not."""
    runtime = "acp" if args.get("runtime") == "acp" else "subagent"
    if runtime != "acp" and args.get("streamTo"):
        return {"status": "error", "error": f"streamTo is only supported for runtime=acp; got runtime={runtime}"}
    if runtime == "acp":
        handler = spawn_runtime("acp")
        if handler is None:
            return {"status": "error", "error": "runtime=acp is not available on this gateway"}
        return handler(requester_session_key=requester_session_key, requester_run_id=requester_run_id, args=args)
    return subagent_spawn(requester_session_key=requester_session_key, requester_run_id=requester_run_id,
                          expects_completion_message=expects_completion_message, **spawn_args(args))  # fmt: skip


@agent_tool(
    "sessions_spawn",
    description=(
        "Spawn a sub-agent to work on a task in its own session. Returns at once with the child session key; "
        "the result is announced back to you when the sub-agent finishes (do not poll). cleanup \"keep\" "
        "(default) keeps the session so you can follow up with sessions_send; \"delete\" removes it after the "
        "announce."
    ),
    parameters=SPAWN_PARAMETERS,
)
async def sessions_spawn(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    return await sync_to_async(spawn_from_args)(requester_session_key=ctx.session_key, requester_run_id=ctx.run_id,
                                                args=args)  # fmt: skip


def subagents_action(*, caller_session_key: str, args: dict[str, Any]) -> dict[str, Any]:
    """One ``subagents`` action for a caller (shared by the tool, the slash command, RPC)."""
    action = args.get("action") or "list"
    if action == "list":
        return control.subagent_list(caller_session_key=caller_session_key, recent_minutes=args.get("recentMinutes"))
    if action == "kill":
        return control.subagent_kill(caller_session_key=caller_session_key, target=args.get("target") or "")
    if action == "steer":
        return control.subagent_steer(caller_session_key=caller_session_key, target=args.get("target") or "",
                                      message=args.get("message") or "")  # fmt: skip
    return control.subagent_info(caller_session_key=caller_session_key, target=args.get("target") or "")


@agent_tool(
    "subagents",
    description=(
        "List, steer or kill the sub-agents you spawned. action \"list\" (default) shows active and recent ones; "
        "\"steer\" restarts one with a new message (target = #index, label or session key); \"kill\" stops one "
        "(or \"all\") and its descendants; \"info\" shows one."
    ),
    parameters=SUBAGENTS_PARAMETERS,
)
async def subagents(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    return await sync_to_async(subagents_action)(caller_session_key=ctx.session_key, args=args)

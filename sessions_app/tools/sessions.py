"""Agent tools over other sessions: ``sessions_send``, ``sessions_list``, ``sessions_history``.

Each tool parses its arguments, calls one service or selector and shapes the result the
way OpenClaw's tools do (spec-b §4, §5). Failures are results (``status: error`` or
``forbidden`` with ``error``), never exceptions, so the model can read them.
"""

from __future__ import annotations

import uuid
from typing import Any

from asgiref.sync import sync_to_async

from openclaw_site.errors import GatewayError

from ..schema import array, boolean, integer, obj, string
from ..services.session_send import SendRequest, failure_result, session_send
from . import ToolContext, agent_tool

MESSAGE_ALIASES = ("message", "SendMessage", "content", "text")
NUMBER = {"type": "number", "minimum": 0}

SEND_SCHEMA = obj(
    {
        "sessionKey": string(),
        "label": string(min_length=1, max_length=64),
        "agentId": string(min_length=1, max_length=64),
        "message": string(),
        "SendMessage": string(),
        "content": string(),
        "text": string(),
        "timeoutSeconds": NUMBER,
    }
)


def _message(args: dict[str, Any]) -> str:
    return next((args[name] for name in MESSAGE_ALIASES if isinstance(args.get(name), str) and args[name].strip()), "")


def _timeout(args: dict[str, Any]) -> int:
    value = args.get("timeoutSeconds")
    return 30 if value is None else max(0, int(value))


@agent_tool(
    "sessions_send",
    description=(
        "Send a message into another session and wait for its reply (timeoutSeconds, default 30; "
        "0 = fire and forget). Identify the target by sessionKey, by label (optionally with agentId), "
        "or by agentId alone (that agent's main session). Returns {runId, status: ok|accepted|timeout|"
        "error|forbidden, reply?, sessionKey, delivery: {status, id}}; after 'accepted' the reply still "
        "arrives later as a message in this session."
    ),
    parameters=SEND_SCHEMA,
)
async def sessions_send_tool(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    message = _message(args)
    if not message:
        return {"runId": str(uuid.uuid4()), "status": "error", "error": "message required"}
    request = SendRequest(
        message=message, requester_key=ctx.session_key, requester_run_id=ctx.run_id, tool_call_id=ctx.tool_call_id,
        session_key=args.get("sessionKey"), label=args.get("label"), agent_id=args.get("agentId"),
        timeout_s=_timeout(args), sandboxed=bool(ctx.extra.get("sandboxed")),
        requester_channel=ctx.extra.get("channel"),
    )  # fmt: skip
    try:
        return await session_send(request=request)
    except GatewayError as error:
        return failure_result(error)


# --- sessions_list ---------------------------------------------------------------------------

LIST_SCHEMA = obj(
    {
        "kinds": array(string()),
        "limit": integer(minimum=1),
        "activeMinutes": integer(minimum=1),
        "messageLimit": integer(minimum=0, maximum=20),
        "label": string(),
        "agentId": string(),
        "search": string(),
        "delegated": boolean(),
        "includeDerivedTitles": boolean(),
        "includeLastMessage": boolean(),
    }
)


@agent_tool(
    "sessions_list",
    description=(
        "List the sessions this session may see (kinds main|group|cron|hook|node|other, limit, "
        "activeMinutes, messageLimit for the last messages, label, agentId, search; delegated=true for "
        "the hub-delegated workers this session owns)."
    ),
    parameters=LIST_SCHEMA,
)
async def sessions_list_tool(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    from .session_reads import sessions_list_for

    try:
        return await sync_to_async(sessions_list_for)(
            requester_key=ctx.session_key, sandboxed=bool(ctx.extra.get("sandboxed")), params=args
        )
    except GatewayError as error:
        return {"status": "forbidden" if error.code == "FORBIDDEN" else "error", "error": error.message}


# --- sessions_history ------------------------------------------------------------------------

HISTORY_SCHEMA = obj(
    {
        "sessionKey": string(min_length=1),
        "limit": integer(minimum=1),
        "offset": integer(minimum=0),
        "includeTools": boolean(),
    },
    required=("sessionKey",),
)


@agent_tool(
    "sessions_history",
    description=(
        "Read the recent messages of a session this session may see (sessionKey; limit; offset from the "
        "newest end; includeTools to keep tool results). Long texts are truncated and the result is capped."
    ),
    parameters=HISTORY_SCHEMA,
)
async def sessions_history_tool(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    from .session_reads import sessions_history_for

    try:
        return await sync_to_async(sessions_history_for)(
            requester_key=ctx.session_key, sandboxed=bool(ctx.extra.get("sandboxed")), params=args
        )
    except GatewayError as error:
        return {"status": "forbidden" if error.code == "FORBIDDEN" else "error", "error": error.message}


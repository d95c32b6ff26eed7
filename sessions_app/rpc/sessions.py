"""Session and transcript RPC methods (spec-a §2, spec-b §7.1): params schema → one
service or selector → result. Scopes follow OpenClaw's method table: reads need
``operator.read``, ``sessions.create`` ``operator.write``; ``sessions.reset/delete`` and
``chat.inject`` are admin methods. ``sessions.patch`` is checked per field, as OpenClaw does:
the fields a user picks in a chat client (label, model, thinking, fast mode, queue settings)
need ``operator.write``, the others (exec, elevated, lineage, send policy…) ``operator.admin``.
"""

from __future__ import annotations

import uuid
from typing import Any

from openclaw_site.errors import GatewayError, MissingScopeError

from .. import schema as s
from .. import selectors
from ..events import SESSIONS_GROUP
from ..exceptions import WebchatMutationError
from ..serializers import session_row
from ..services import sessions as services
from . import ADMIN, READ, WRITE, RpcContext, rpc_method

KEY = s.string(min_length=1)
NULLABLE_TEXT = s.string(min_length=1, nullable=True)
_CONTROL_UI = "openclaw-control-ui"


def _key(params: dict, method: str, field: str = "key") -> str:
    return selectors.canonical_key(params[field], method=method, agent_id=params.get("agentId"))


def _refuse_webchat(ctx: RpcContext, action: str) -> None:
    """WebChat clients (not the Control UI) change sessions only through ``chat.send``."""
    client = ctx.client or {}
    if client.get("id") == _CONTROL_UI:
        return
    if client.get("id") in ("webchat", "webchat-ui") or client.get("mode") == "webchat":
        raise WebchatMutationError(action)


# --- reads ---------------------------------------------------------------------------------

LIST_SCHEMA = s.obj({
    "limit": s.integer(minimum=1), "offset": s.integer(minimum=0), "activeMinutes": s.integer(minimum=1),
    "includeGlobal": s.boolean(), "includeUnknown": s.boolean(), "includeDerivedTitles": s.boolean(),
    "includeLastMessage": s.boolean(), "label": s.string(), "spawnedBy": KEY, "agentId": KEY,
    "search": s.string(), "archived": s.boolean(),
})  # fmt: skip


@rpc_method("sessions.list", scope=READ, schema=LIST_SCHEMA)
def sessions_list(ctx: RpcContext, params: dict) -> dict:
    return selectors.session_list(
        limit=params.get("limit"), offset=params.get("offset", 0), archived=params.get("archived"),
        include_derived_titles=params.get("includeDerivedTitles", False),
        include_last_message=params.get("includeLastMessage", False),
        agent_id=params.get("agentId"), label=params.get("label"), spawned_by=params.get("spawnedBy"),
        search=params.get("search"), active_minutes=params.get("activeMinutes"),
        include_global=params.get("includeGlobal", False), include_unknown=params.get("includeUnknown", False),
    )  # fmt: skip


RESOLVE_SCHEMA = s.obj({
    "key": KEY, "sessionId": KEY, "label": s.string(), "agentId": KEY, "spawnedBy": KEY,
    "includeGlobal": s.boolean(), "includeUnknown": s.boolean(),
})  # fmt: skip


@rpc_method("sessions.resolve", scope=READ, schema=RESOLVE_SCHEMA)
def sessions_resolve(ctx: RpcContext, params: dict) -> dict:
    if params.get("key"):
        selectors.canonical_key(params["key"], method="sessions.resolve")
    key = selectors.session_resolve(
        key=params.get("key"), session_id=params.get("sessionId"), label=params.get("label"),
        agent_id=params.get("agentId"), spawned_by=params.get("spawnedBy"),
        include_global=params.get("includeGlobal", False), include_unknown=params.get("includeUnknown", False),
    )  # fmt: skip
    return {"ok": True, "key": key}


PREVIEW_SCHEMA = s.obj(
    {"keys": s.array(KEY, min_items=1, max_items=64), "limit": s.integer(minimum=1), "maxChars": s.integer(minimum=20)},
    required=("keys",),
)


@rpc_method("sessions.preview", scope=READ, schema=PREVIEW_SCHEMA)
def sessions_preview(ctx: RpcContext, params: dict) -> dict:
    return selectors.session_preview(keys_=params["keys"], limit=params.get("limit", 12), max_chars=params.get("maxChars", 240))


@rpc_method("sessions.get", scope=READ, schema=s.obj({"key": KEY, "limit": s.integer(minimum=1)}, required=("key",)))
def sessions_get(ctx: RpcContext, params: dict) -> dict:
    return selectors.session_detail(key=_key(params, "sessions.get"), limit=params.get("limit", 200))


HISTORY_SCHEMA = s.obj(
    {
        "sessionKey": KEY, "agentId": KEY, "cursor": s.string(), "limit": s.integer(minimum=1, maximum=1000),
        "maxBytes": s.integer(minimum=1024), "offset": s.integer(minimum=0), "pendingBefore": s.ANY,
        "inputRunIds": s.array(s.string()), "messageId": s.string(), "sessionId": s.string(),
        "maxChars": s.integer(minimum=1, maximum=500_000),
    },
    required=("sessionKey",),
)  # fmt: skip


@rpc_method("chat.history", scope=READ, schema=HISTORY_SCHEMA)
def chat_history(ctx: RpcContext, params: dict) -> dict:
    return selectors.chat_history(
        key=_key(params, "chat.history", "sessionKey"), limit=params.get("limit"), offset=params.get("offset", 0),
        max_chars=params.get("maxChars"), max_bytes=params.get("maxBytes"),
    )  # fmt: skip


@rpc_method("sessions.subscribe", scope=READ, schema=s.obj({}))
async def sessions_subscribe(ctx: RpcContext, params: dict) -> dict:
    if ctx.subscribe is not None:
        await ctx.subscribe(SESSIONS_GROUP)
    return {"subscribed": True}


@rpc_method("sessions.unsubscribe", scope=READ, schema=s.obj({}))
async def sessions_unsubscribe(ctx: RpcContext, params: dict) -> dict:
    if ctx.unsubscribe is not None:
        await ctx.unsubscribe(SESSIONS_GROUP)
    return {"subscribed": False}


# --- writes --------------------------------------------------------------------------------

ENVELOPE = s.obj({name: s.array(KEY) for name in (
    "allowedTools", "disallowedTools", "allowedPaths", "deniedPaths", "bashCommandAllowlist")})  # fmt: skip
CREATE_SCHEMA = s.obj({
    "key": KEY, "agentId": KEY, "label": s.string(), "model": KEY, "envelope": ENVELOPE,
    "parentSessionKey": KEY, "task": s.string(), "message": s.string(),
})  # fmt: skip


@rpc_method("sessions.create", scope=WRITE, schema=CREATE_SCHEMA)
def sessions_create(ctx: RpcContext, params: dict) -> dict:
    session = services.session_create(
        key=params.get("key"), agent_id=params.get("agentId"), label=params.get("label"),
        model=params.get("model"), parent_session_key=params.get("parentSessionKey"), envelope=params.get("envelope"),
    )  # fmt: skip
    result = {"ok": True, "key": session.key, "sessionId": session.session_id, "entry": session_row(session)}
    text = params.get("message") or params.get("task")
    return {**result, **(_first_turn(ctx, session.key, text) if text and text.strip() else {"runStarted": False})}


def _first_turn(ctx: RpcContext, key: str, text: str) -> dict[str, Any]:
    """Send the initial message as ``chat.send`` does (its service; this handler is sync)."""
    from ..services.chat import chat_send

    try:
        sent = chat_send(session_key=key, message=text, idempotency_key=str(uuid.uuid4()))
    except GatewayError as error:
        return {"runStarted": False, "runError": error.to_shape()}
    return {"runStarted": True, "runId": sent.run.run_id}


PATCH_SCHEMA = s.obj(
    {
        "key": KEY, "label": s.string(nullable=True), "thinkingLevel": NULLABLE_TEXT,
        "fastMode": s.boolean(nullable=True), "verboseLevel": NULLABLE_TEXT, "traceLevel": NULLABLE_TEXT,
        "reasoningLevel": NULLABLE_TEXT, "responseUsage": s.string(enum=("off", "tokens", "full", "on"), nullable=True),
        "elevatedLevel": NULLABLE_TEXT, "execHost": NULLABLE_TEXT, "execSecurity": NULLABLE_TEXT,
        "execAsk": NULLABLE_TEXT, "execNode": NULLABLE_TEXT, "model": NULLABLE_TEXT, "spawnedBy": NULLABLE_TEXT,
        "spawnedWorkspaceDir": NULLABLE_TEXT, "spawnDepth": s.integer(minimum=0, nullable=True),
        "subagentRole": s.string(enum=("orchestrator", "leaf"), nullable=True),
        "subagentControlScope": s.string(enum=("children", "none"), nullable=True),
        "envelope": {**ENVELOPE, "nullable": True},
        "sendPolicy": s.string(enum=("allow", "deny"), nullable=True),
        "groupActivation": s.string(enum=("mention", "always"), nullable=True),
        "queueMode": NULLABLE_TEXT, "queueDebounceMs": s.integer(minimum=0, nullable=True),
        "queueCap": s.integer(minimum=1, nullable=True), "queueDrop": NULLABLE_TEXT,
    },
    required=("key",),
)  # fmt: skip


# sessions.patch fields an operator.write connection may set; the rest need operator.admin.
PATCH_WRITE_FIELDS = frozenset({"key", "label", "model", "thinkingLevel", "fastMode", "queueMode",
                                "queueDebounceMs", "queueCap", "queueDrop"})  # fmt: skip


@rpc_method("sessions.patch", scope=WRITE, schema=PATCH_SCHEMA)
def sessions_patch(ctx: RpcContext, params: dict) -> dict:
    if not ctx.has_scope(ADMIN) and set(params) - PATCH_WRITE_FIELDS:
        raise MissingScopeError(ADMIN)  # nothing is changed: checked before any write
    _refuse_webchat(ctx, "patch")
    changes = {name: value for name, value in params.items() if name != "key"}
    session = services.session_patch(key=_key(params, "sessions.patch"), changes=changes)
    row = session_row(session)
    resolved = {"modelProvider": row.get("modelProvider"), "model": row.get("model")}
    return {"ok": True, "path": selectors.store_path(), "key": session.key, "entry": row, "resolved": resolved}


@rpc_method("sessions.reset", scope=ADMIN,
            schema=s.obj({"key": KEY, "reason": s.string(enum=("new", "reset"))}, required=("key",)))  # fmt: skip
def sessions_reset(ctx: RpcContext, params: dict) -> dict:
    session = services.session_reset(key=_key(params, "sessions.reset"), reason=params.get("reason", "reset"))
    return {"ok": True, "key": session.key, "entry": session_row(session)}


DELETE_SCHEMA = s.obj(
    {"key": KEY, "deleteTranscript": s.boolean(), "emitLifecycleHooks": s.boolean()}, required=("key",)
)


@rpc_method("sessions.delete", scope=ADMIN, schema=DELETE_SCHEMA)
def sessions_delete(ctx: RpcContext, params: dict) -> dict:
    _refuse_webchat(ctx, "delete")
    return services.session_delete(
        key=_key(params, "sessions.delete"), delete_transcript=params.get("deleteTranscript", True)
    )


INJECT_SCHEMA = s.obj(
    {"sessionKey": KEY, "agentId": KEY, "message": KEY, "label": s.string(max_length=100),
     "createIfMissing": s.boolean()},
    required=("sessionKey", "message"),
)  # fmt: skip


@rpc_method("chat.inject", scope=ADMIN, schema=INJECT_SCHEMA)
def chat_inject(ctx: RpcContext, params: dict) -> dict:
    entry = services.chat_inject(
        key=_key(params, "chat.inject", "sessionKey"), message=params["message"], label=params.get("label"),
        agent_id=params.get("agentId"), create_if_missing=params.get("createIfMissing", False),
    )  # fmt: skip
    return {"ok": True, "messageId": entry.message_id}

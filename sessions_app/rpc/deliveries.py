"""RPC methods over inter-session deliveries: follow a message, retry a failed one,
and ``sessions.sendTool``, the ``sessions_send`` tool as an operator or a session calls it.

``deliveries.list {state?, session?, limit?}`` and ``deliveries.get {id}`` read;
``deliveries.retry {id}`` (admin) puts a failed or expired delivery back in the queue.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from ..models import Delivery
from ..schema import integer, obj, string
from ..selectors import canonical_key
from ..services.deliveries import delivery_get, delivery_list, delivery_retry
from ..services.session_send import SendRequest, session_send
from . import ADMIN, READ, WRITE, RpcContext, rpc_method

STATES = [choice for choice, _ in Delivery.State.choices]


def _ms(value) -> int | None:
    return int(value.timestamp() * 1000) if value else None


def delivery_row(delivery: Delivery) -> dict[str, Any]:
    """The wire shape of a delivery (camelCase, epoch ms)."""
    return {
        "id": delivery.delivery_id, "kind": delivery.kind, "state": delivery.state,
        "idempotencyKey": delivery.idempotency_key, "sourceSessionKey": delivery.source_session_key or None,
        "sourceRunId": delivery.source_run_id, "targetSessionKey": delivery.target_session_key,
        "targetRunId": delivery.target_run_id, "text": (delivery.payload or {}).get("text"),
        "payload": delivery.payload, "attempts": delivery.attempts, "maxAttempts": delivery.max_attempts,
        "nextAttemptAt": _ms(delivery.next_attempt_at), "lastError": delivery.last_error or None,
        "consumedByRunId": delivery.consumed_by_run_id, "reply": delivery.reply,
        "senderNotified": delivery.sender_notified, "createdAt": _ms(delivery.created_at),
        "deliveredAt": _ms(delivery.delivered_at), "consumedAt": _ms(delivery.consumed_at),
        "expiresAt": _ms(delivery.expires_at),
    }  # fmt: skip


@rpc_method("deliveries.list", scope=READ, schema=obj({
    "state": string(enum=STATES), "session": string(min_length=1), "limit": integer(minimum=1, maximum=1000),
}))  # fmt: skip
def deliveries_list(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    rows = delivery_list(state=params.get("state"), session_key=params.get("session"), limit=params.get("limit") or 100)
    return {"deliveries": [delivery_row(d) for d in rows]}


@rpc_method("deliveries.get", scope=READ, schema=obj({"id": string(min_length=1)}, required=("id",)))
def deliveries_get(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    return delivery_row(delivery_get(delivery_id=params["id"]))


@rpc_method("deliveries.retry", scope=ADMIN, schema=obj({"id": string(min_length=1)}, required=("id",)))
def deliveries_retry(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    return delivery_row(delivery_retry(delivery=delivery_get(delivery_id=params["id"])))


SEND_SCHEMA = obj({
    "sessionKey": string(), "label": string(min_length=1, max_length=64), "agentId": string(min_length=1, max_length=64),
    "message": string(min_length=1), "timeoutSeconds": {"type": "number", "minimum": 0},
    "requesterSessionKey": string(min_length=1), "idempotencyKey": string(min_length=1, max_length=256),
}, required=("message",))  # fmt: skip


@rpc_method("sessions.sendTool", scope=WRITE, schema=SEND_SCHEMA)
async def sessions_send_tool(ctx: RpcContext, params: dict[str, Any]) -> dict[str, Any]:
    """``sessions_send`` from outside a turn; without ``requesterSessionKey`` the caller is an
    operator (no visibility guard, no reply flow). Errors raise (REST maps them to 4xx)."""
    timeout = params.get("timeoutSeconds")
    requester = params.get("requesterSessionKey")
    if requester:
        requester = await sync_to_async(canonical_key)(requester)
    request = SendRequest(
        message=params["message"], requester_key=requester,
        session_key=params.get("sessionKey"), label=params.get("label"), agent_id=params.get("agentId"),
        timeout_s=30 if timeout is None else max(0, int(timeout)), idempotency_key=params.get("idempotencyKey"),
    )  # fmt: skip
    return await session_send(request=request)

"""The gateway WebSocket endpoint (OpenClaw protocol v4).

Three sections: lifecycle (challenge, handshake timeout, ticks), inbound frames
(connect, then requests dispatched concurrently through the RPC registry) and
group-event relays (events numbered per connection).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError, InterfaceError

from openclaw_site.errors import GatewayError, InvalidRequestError, UnavailableError

from . import protocol
from .events import BROADCAST_GROUP, now_ms
from .rpc import RpcContext, dispatch, method_names, set_interim_responder

logger = logging.getLogger(__name__)


class GatewayConsumer(AsyncWebsocketConsumer):
    # --- lifecycle -------------------------------------------------------------------

    async def connect(self) -> None:
        self.conn_id = str(uuid.uuid4())
        self.nonce = str(uuid.uuid4())
        self.challenge_ts = now_ms()
        self.ctx: RpcContext | None = None
        self.event_seq = 0
        self.groups_joined: set[str] = set()
        self.tasks: set[asyncio.Task] = set()
        self.session_seqs: dict[str, dict[int, None]] = {}  # sessionKey -> recently sent sessionSeqs
        self.replaying: dict[str, list[dict[str, Any]]] = {}  # sessionKey -> live events held back
        await self.accept()
        await self._send_json({"type": "event", "event": "connect.challenge",
                               "payload": {"nonce": self.nonce, "ts": self.challenge_ts, "capabilities": []}})  # fmt: skip
        self._spawn(self._handshake_timeout())

    async def disconnect(self, code: int) -> None:
        for task in list(self.tasks):
            task.cancel()
        for group in list(self.groups_joined):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups_joined.clear()

    async def _handshake_timeout(self) -> None:
        await asyncio.sleep(settings.OPENCLAW_HANDSHAKE_TIMEOUT_S)
        if self.ctx is None:
            await self.close(code=1000)

    async def _ticks(self) -> None:
        interval = settings.OPENCLAW_TICK_INTERVAL_MS / 1000
        while True:
            await asyncio.sleep(interval)
            await self._send_event("tick", {"ts": now_ms()})

    # --- inbound frames --------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raw = text_data if text_data is not None else (bytes_data or b"").decode("utf-8", "replace")
        limit = settings.OPENCLAW_MAX_PAYLOAD if self.ctx else settings.OPENCLAW_PRECONNECT_MAX_BYTES
        if len(raw.encode()) > limit:
            await self.close(code=1009)
            return
        try:
            frame = json.loads(raw)
        except ValueError:
            await self.close(code=1000)
            return
        if self.ctx is None:
            await self._handshake(frame)
        else:
            self._spawn(self._request(frame))

    async def _handshake(self, frame: Any) -> None:
        frame_id = _frame_id(frame)
        if not _is_request(frame) or frame.get("method") != "connect":
            error = InvalidRequestError("invalid handshake: first request must be connect")
            await self._send_json(protocol.error_response(frame_id, error))
            await self.close(code=1008)
            return
        try:
            hello = await self._connect(frame.get("params"))
        except GatewayError as error:
            await self._send_json(protocol.error_response(frame_id, error))
            await self.close(code=getattr(error, "close_code", 1008))
            return
        await self._send_json(protocol.response(frame_id, hello))
        await self.channel_layer.group_add(BROADCAST_GROUP, self.channel_name)
        self.groups_joined.add(BROADCAST_GROUP)
        self._spawn(self._ticks())

    async def _connect(self, params: Any) -> dict[str, Any]:
        params = protocol.validate_connect(params)
        user = self.scope.get("user")
        auth_method = await database_sync_to_async(protocol.authenticate)(
            params, user=user, origin=_header(self.scope, b"origin"), host=_header(self.scope, b"host")
        )
        protocol.verify_device(params, nonce=self.nonce, challenge_ts=self.challenge_ts)
        scopes = protocol.granted_scopes(params)
        role = params.get("role") or "operator"
        self.ctx = RpcContext(
            conn_id=self.conn_id, role=role, scopes=frozenset(scopes), client=params["client"],
            user_id=getattr(user, "pk", None), subscribe=self._join, unsubscribe=self._leave,
            send_event=self._send_event, replay_session=self._replay_session,
        )  # fmt: skip
        return await database_sync_to_async(protocol.hello_ok)(
            conn_id=self.conn_id, auth_method=auth_method, role=role, scopes=scopes, methods=method_names()
        )

    async def _request(self, frame: Any) -> None:
        frame_id = _frame_id(frame)
        if not _is_request(frame):
            errors = protocol.s.validate(protocol.REQUEST_SCHEMA, frame)
            await self._send_json(protocol.error_response(frame_id, InvalidRequestError(
                "invalid request frame: " + "; ".join(errors or ["malformed"]))))  # fmt: skip
            return
        set_interim_responder(lambda payload: self._send_json(protocol.response(frame_id, payload)))
        try:
            payload = await dispatch(self.ctx, frame["method"], frame.get("params"))
        except GatewayError as error:
            await self._send_json(protocol.error_response(frame_id, error))
        except (DatabaseError, InterfaceError):
            logger.exception("database error in %s", frame["method"])
            error = UnavailableError("database unavailable", details={"code": "DATABASE_UNAVAILABLE"})
            await self._send_json(protocol.error_response(frame_id, error))
        except Exception:
            logger.exception("method %s failed", frame["method"])
            error = UnavailableError("internal error", details={"code": "INTERNAL_ERROR"}, retryable=False)
            await self._send_json(protocol.error_response(frame_id, error))
        else:
            await self._send_json(protocol.response(frame_id, payload))

    # --- group-event relays ------------------------------------------------------------

    async def gateway_event(self, message: dict[str, Any]) -> None:
        payload = message.get("payload") or {}
        key, seq = payload.get("sessionKey"), message.get("sessionSeq")
        if key in self.replaying and seq is not None:
            self.replaying[key].append(message)
            return
        await self._send_session_event(message["event"], payload, key, seq)

    async def _send_session_event(self, event: str, payload: dict[str, Any], key: str | None, seq: int | None) -> None:
        """Send an event; a session event (sessionKey + sessionSeq) goes out once per seq."""
        if key is not None and seq is not None:
            sent = self.session_seqs.setdefault(key, {})
            if seq in sent:
                return
            sent[seq] = None
            if len(sent) > 2000:
                del sent[next(iter(sent))]
        await self._send_event(event, payload)

    async def _replay_session(self, key: str, group: str, load_events) -> int:
        """Join ``group`` and send the stored events, holding live ones back meanwhile."""
        self.replaying.setdefault(key, [])
        try:
            await self._join(group)
            stored = await load_events()
            for row in stored:
                await self._send_session_event(row["event"], row["payload"], key, row["seq"])
        finally:
            held = self.replaying.pop(key, [])
        for message in sorted(held, key=lambda m: m["sessionSeq"]):
            await self._send_session_event(message["event"], message.get("payload") or {}, key, message["sessionSeq"])
        return len(stored)

    async def gateway_close(self, message: dict[str, Any]) -> None:
        await self._send_event("shutdown", {"reason": message.get("reason", "shutdown")})
        await self.close(code=1012)

    async def _join(self, group: str) -> None:
        if group not in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)

    async def _leave(self, group: str) -> None:
        if group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
            self.groups_joined.discard(group)

    async def _send_event(self, event: str, payload: dict[str, Any]) -> None:
        self.event_seq += 1
        await self._send_json({"type": "event", "event": event, "payload": payload, "seq": self.event_seq})

    async def _send_json(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame, separators=(",", ":"), default=str))

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def _is_request(frame: Any) -> bool:
    return isinstance(frame, dict) and not protocol.s.validate(protocol.REQUEST_SCHEMA, frame)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _frame_id(frame: Any) -> str:
    if isinstance(frame, dict) and isinstance(frame.get("id"), str):
        return frame["id"]
    return ""

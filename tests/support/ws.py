"""A small real WebSocket client for the gateway protocol (the ``websockets`` package)."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from typing import Any

import websockets

DEFAULT_CONNECT = {
    "minProtocol": 4,
    "maxProtocol": 4,
    "client": {"id": "test", "version": "1.0", "platform": "linux", "mode": "test"},
    "role": "operator",
    "scopes": ["operator.admin", "operator.read", "operator.write"],
}


class GatewayClient:
    """Connects, answers the challenge, then sends requests and collects events.

    Every wait is bounded (``timeout`` seconds, default 10).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws = None
        self.challenge: dict[str, Any] | None = None
        self.hello: dict[str, Any] | None = None
        self.events: list[dict[str, Any]] = []
        self._pending: dict[str, asyncio.Future] = {}
        self._event_waiters: list[tuple[Any, asyncio.Future]] = []
        self._reader: asyncio.Task | None = None
        self._ids = itertools.count(1)
        self.closed: asyncio.Future | None = None

    async def open(self, timeout: float = 10) -> dict[str, Any]:
        self.ws = await asyncio.wait_for(websockets.connect(self.url, max_size=2**25), timeout)
        self.challenge = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.closed = asyncio.get_running_loop().create_future()
        return self.challenge

    async def connect(self, *, token: str | None = "test-token", timeout: float = 10, **overrides) -> dict[str, Any]:
        """Open and complete the handshake; returns the hello-ok payload (raises on error)."""
        if self.ws is None:
            await self.open(timeout)
        params = {**DEFAULT_CONNECT, **overrides}
        if token is not None:
            params.setdefault("auth", {"token": token})
        res = await self.raw_request("connect", params, timeout=timeout)
        if not res["ok"]:
            raise GatewayCallError(res["error"])
        self.hello = res["payload"]
        self._reader = asyncio.ensure_future(self._read())
        return self.hello

    async def raw_request(self, method: str, params: Any = None, *, timeout: float = 10) -> dict[str, Any]:
        """Send one request before the reader runs (handshake) and return the raw response."""
        frame_id = f"{next(self._ids)}:{uuid.uuid4()}"
        frame = {"type": "req", "id": frame_id, "method": method}
        if params is not None:
            frame["params"] = params
        await self.ws.send(json.dumps(frame))
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if message.get("type") == "res" and message.get("id") == frame_id:
                return message
            self.events.append(message)

    async def request(self, method: str, params: Any = None, *, timeout: float = 10) -> dict[str, Any]:
        """Send a request after hello; returns the whole response frame."""
        frame_id = f"{next(self._ids)}:{uuid.uuid4()}"
        future = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = future
        frame = {"type": "req", "id": frame_id, "method": method}
        if params is not None:
            frame["params"] = params
        await self.ws.send(json.dumps(frame))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(frame_id, None)

    async def call(self, method: str, params: Any = None, *, timeout: float = 10) -> Any:
        """Request and return the payload; raises :class:`GatewayCallError` on an error response."""
        res = await self.request(method, params, timeout=timeout)
        if not res["ok"]:
            raise GatewayCallError(res["error"])
        return res["payload"]

    async def wait_event(self, name: str, predicate=None, *, timeout: float = 10) -> dict[str, Any]:
        """Wait for (or find already received) an event frame named ``name``."""
        for frame in self.events:
            if frame.get("event") == name and (predicate is None or predicate(frame["payload"])):
                self.events.remove(frame)
                return frame
        future = asyncio.get_running_loop().create_future()
        matcher = (name, predicate)
        self._event_waiters.append((matcher, future))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._event_waiters = [w for w in self._event_waiters if w[1] is not future]

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self._route(json.loads(raw))
        except websockets.ConnectionClosed as exc:
            if not self.closed.done():
                self.closed.set_result(exc.rcvd.code if exc.rcvd else None)
            return
        if not self.closed.done():
            self.closed.set_result(self.ws.close_code)

    def _route(self, message: dict[str, Any]) -> None:
        if message.get("type") == "res":
            future = self._pending.get(message.get("id"))
            if future is not None and not future.done():
                future.set_result(message)
            return
        for (name, predicate), future in list(self._event_waiters):
            if message.get("event") == name and (predicate is None or predicate(message["payload"])) and not future.done():
                future.set_result(message)
                return
        self.events.append(message)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()

    async def __aenter__(self) -> "GatewayClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class GatewayCallError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        self.error = error
        self.code = error.get("code")
        self.message = error.get("message")
        self.details = error.get("details") or {}
        super().__init__(f"{self.code}: {self.message}")


async def connect(gateway) -> GatewayClient:
    """A client connected and authenticated to a started gateway (``ws_url``, ``token``)."""
    client = GatewayClient(gateway.ws_url)
    await client.connect(token=gateway.token)
    return client


async def eventually(probe, *, timeout: float = 20, interval: float = 0.1):
    """Poll ``probe()`` (async) until it returns something truthy, at most ``timeout``
    seconds; returns the last value (falsy when the time ran out)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(interval)

"""Call one RPC method of a remote gateway over the WebSocket protocol (v4), as the
``openclaw`` CLI does with ``--url``: answer the challenge, ``connect`` as client
``cli``/mode ``cli`` with the least scope the method needs and no device block, send
the request (ids ``<counter>:<uuid>``), return its payload. Every wait is bounded.
"""

from __future__ import annotations

import json
import platform
import uuid
from typing import Any

from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

CLIENT_VERSION = "0.1.0"


class RemoteCallError(Exception):
    """The gateway answered with an ErrorShape (or could not be reached)."""

    def __init__(self, code: str, message: str, details: dict | None = None) -> None:
        self.code, self.message, self.details = code, message, details or {}
        super().__init__(f"{code}: {message}")


def _request(ws, counter: int, method: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
    frame_id = f"{counter}:{uuid.uuid4()}"
    ws.send(json.dumps({"type": "req", "id": frame_id, "method": method, "params": params}))
    while True:
        frame = json.loads(ws.recv(timeout=timeout))
        if frame.get("type") == "res" and frame.get("id") == frame_id:
            return frame


def _connect_params(*, scope: str, token: str | None, password: str | None) -> dict[str, Any]:
    auth = {key: value for key, value in (("token", token), ("password", password)) if value}
    client = {"id": "cli", "version": CLIENT_VERSION, "platform": platform.system().lower() or "linux",
              "deviceFamily": platform.system() or "Linux", "mode": "cli", "instanceId": str(uuid.uuid4())}  # fmt: skip
    return {"minProtocol": 4, "maxProtocol": 4, "client": client, "caps": [], "auth": auth,
            "role": "operator", "scopes": [scope]}  # fmt: skip


def _raise(frame: dict[str, Any]) -> None:
    error = frame.get("error") or {}
    raise RemoteCallError(error.get("code", "UNAVAILABLE"), error.get("message", "request failed"), error.get("details"))


def remote_call(
    *, url: str, method: str, params: dict[str, Any], scope: str, token: str | None = None,
    password: str | None = None, timeout: float = 30.0,
) -> Any:  # fmt: skip
    """Connect, call ``method`` once, return its payload; raises :class:`RemoteCallError`."""
    try:
        with connect(url, open_timeout=timeout, close_timeout=2, max_size=2**25) as ws:
            json.loads(ws.recv(timeout=timeout))  # connect.challenge
            hello = _request(ws, 1, "connect", _connect_params(scope=scope, token=token, password=password), timeout)
            if not hello.get("ok"):
                _raise(hello)
            frame = _request(ws, 2, method, params, timeout)
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise RemoteCallError("UNAVAILABLE", f"cannot reach the gateway at {url}: {exc}") from exc
    if not frame.get("ok"):
        _raise(frame)
    return frame.get("payload")

"""The gateway WebSocket protocol v4 against a real running gateway (``manage.py gateway``).

Each test starts one server and drives it with real WebSocket clients (the
``websockets`` package): the handshake and every failure case of the reference table
(openclaw-protocol.md §6.3), error shapes, scopes, and the session methods.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re

import pytest
import websockets
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sessions_app.rpc import method_names
from tests.support.ws import DEFAULT_CONNECT, GatewayCallError, GatewayClient

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]


# --- raw frames ----------------------------------------------------------------------------


async def raw_open(url: str):
    ws = await websockets.connect(url, max_size=2**25)
    challenge = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return ws, challenge


async def raw_request(ws, method: str, params=None, frame_id: str = "x1") -> dict:
    await ws.send(json.dumps({"type": "req", "id": frame_id, "method": method, "params": params}))
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def close_code(ws, timeout: float = 10) -> int | None:
    """Read until the server closes; the close code it sent."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def connect_params(token: str | None = "test-token", **overrides) -> dict:
    params = {**DEFAULT_CONNECT, **overrides}
    if token is not None:
        params.setdefault("auth", {"token": token})
    return params


async def client(gateway, **overrides) -> GatewayClient:
    connected = GatewayClient(gateway.ws_url)
    await connected.connect(token=gateway.token, **overrides)
    return connected


async def expect_error(call, code: str, message: str | None = None, detail: str | None = None) -> GatewayCallError:
    with pytest.raises(GatewayCallError) as caught:
        await call
    error = caught.value
    assert error.code == code, error.error
    if message is not None:
        assert error.message == message, error.error
    if detail is not None:
        assert error.details.get("code") == detail, error.error
    return error


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed_device(challenge: dict, *, scopes: list[str], token: str, key=None, signer=None) -> dict:
    """A v3 device block: ``deviceId`` = sha256 of the raw key, the challenge's nonce and ts."""
    key = key or Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    device_id = hashlib.sha256(raw).hexdigest()
    nonce, ts = challenge["payload"]["nonce"], challenge["payload"]["ts"]
    payload = "|".join(["v3", device_id, "test", "test", "operator", ",".join(scopes), str(ts), token, nonce, "linux", ""])
    signature = (signer or key).sign(payload.encode())
    return {"id": device_id, "publicKey": b64url(raw), "signature": b64url(signature), "signedAt": ts, "nonce": nonce}


# --- handshake -------------------------------------------------------------------------------


async def test_handshake_hello_ok(live_gateway):
    """Challenge first, then hello-ok with the v4 fields; no seq on the challenge."""
    gw = GatewayClient(live_gateway.ws_url)
    challenge = await gw.open()
    assert challenge["event"] == "connect.challenge" and "seq" not in challenge
    assert challenge["payload"]["nonce"] and isinstance(challenge["payload"]["ts"], int)
    hello = await gw.connect(token=live_gateway.token, scopes=["operator.read", "operator.write"])
    assert hello["type"] == "hello-ok" and hello["protocol"] == 4
    assert hello["server"]["version"] and hello["server"]["connId"]
    assert hello["features"]["methods"] == method_names()
    assert {"sessions.changed", "session.message", "chat", "tick"} <= set(hello["features"]["events"])
    defaults = hello["snapshot"]["sessionDefaults"]
    assert {name: defaults[name] for name in ("defaultAgentId", "mainKey", "mainSessionKey", "scope")} == {
        "defaultAgentId": "main", "mainKey": "main", "mainSessionKey": "agent:main:main", "scope": "per-sender",
    }  # fmt: skip
    assert hello["auth"]["scopes"] == ["operator.read", "operator.write"] and hello["auth"]["role"] == "operator"
    assert hello["policy"] == {"maxPayload": 26_214_400, "maxBufferedBytes": 52_428_800, "tickIntervalMs": 30_000}
    health = await gw.call("health")
    assert health["ok"] is True
    await gw.close()


async def test_handshake_failures(live_gateway):
    """Every failure row of the reference table: response shape and close code."""
    url = live_gateway.ws_url

    ws, _ = await raw_open(url)
    res = await raw_request(ws, "connect", connect_params(token="wrong"))
    assert res["ok"] is False and res["error"]["code"] == "INVALID_REQUEST"
    assert res["error"]["message"].startswith("unauthorized: gateway token mismatch")
    assert res["error"]["details"]["code"] == "AUTH_TOKEN_MISMATCH"
    assert res["error"]["details"]["recommendedNextStep"] == "update_auth_credentials"
    assert await close_code(ws) == 1008

    ws, _ = await raw_open(url)
    res = await raw_request(ws, "connect", connect_params(minProtocol=3, maxProtocol=3))
    assert res["error"]["message"] == "protocol mismatch"
    assert res["error"]["details"] == {
        "code": "PROTOCOL_MISMATCH", "clientMinProtocol": 3, "clientMaxProtocol": 3,
        "expectedProtocol": 4, "minimumProbeProtocol": 3,
    }  # fmt: skip
    assert await close_code(ws) == 1002

    ws, _ = await raw_open(url)
    res = await raw_request(ws, "health", {})
    assert res == {"type": "res", "id": "x1", "ok": False, "error": {
        "code": "INVALID_REQUEST", "message": "invalid handshake: first request must be connect"}}  # fmt: skip
    assert await close_code(ws) == 1008

    ws, _ = await raw_open(url)
    bad_client = {**DEFAULT_CONNECT["client"], "id": "python"}
    res = await raw_request(ws, "connect", connect_params(client=bad_client))
    assert res["error"]["message"] == "invalid connect params: at /client/id: must be equal to one of the allowed values"
    assert await close_code(ws) == 1008

    ws, _ = await raw_open(url)
    await ws.send("this is not json")
    assert await close_code(ws) == 1000

    ws, _ = await raw_open(url)
    await ws.send(json.dumps({"type": "req", "id": "big", "method": "connect", "params": {"pad": "x" * 70_000}}))
    assert await close_code(ws) == 1009  # pre-connect frames are capped at 64 KiB


async def test_device_signature_verified(live_gateway):
    """A valid Ed25519 v3 signature over the challenge is accepted; a wrong one is refused."""
    scopes = ["operator.admin"]
    gw = GatewayClient(live_gateway.ws_url)
    challenge = await gw.open()
    device = signed_device(challenge, scopes=scopes, token=live_gateway.token)
    hello = await gw.connect(token=live_gateway.token, scopes=scopes, device=device)
    assert hello["type"] == "hello-ok"
    await gw.close()

    ws, challenge = await raw_open(live_gateway.ws_url)
    key = Ed25519PrivateKey.generate()
    forged = signed_device(challenge, scopes=scopes, token=live_gateway.token, key=key, signer=Ed25519PrivateKey.generate())
    res = await raw_request(ws, "connect", connect_params(scopes=scopes, device=forged))
    assert res["ok"] is False and res["error"]["details"]["code"] == "DEVICE_AUTH_INVALID"
    assert await close_code(ws) == 1008


async def test_password_auth_and_handshake_timeout(gateway_factory):
    """Password mode; a silent client is closed after the (shortened) pre-auth timeout."""
    gateway = gateway_factory(
        config={"gateway": {"auth": {"mode": "password", "password": "s3cret"}}},
        env={"OPENCLAW_HANDSHAKE_TIMEOUT_S": "1"},
    )
    gw = GatewayClient(gateway.ws_url)
    hello = await gw.connect(token=None, auth={"password": "s3cret"})
    assert hello["auth"]["method"] == "password"
    await asyncio.sleep(1.5)  # an authenticated connection outlives the handshake timeout
    assert (await gw.call("health"))["ok"] is True
    await gw.close()

    ws, _ = await raw_open(gateway.ws_url)
    res = await raw_request(ws, "connect", connect_params(token=None, auth={"password": "nope"}))
    assert res["error"]["details"]["code"] == "AUTH_PASSWORD_MISMATCH"
    assert await close_code(ws) == 1008

    ws, _ = await raw_open(gateway.ws_url)
    started = asyncio.get_running_loop().time()
    assert await close_code(ws, timeout=5) == 1000
    assert asyncio.get_running_loop().time() - started < 4


# --- requests after hello ---------------------------------------------------------------------


async def test_request_errors_keep_the_connection(live_gateway):
    """Unknown method, invalid params and missing scopes answer errors; the socket stays open."""
    admin = await client(live_gateway)
    await expect_error(admin.call("no.such.method", {}), "INVALID_REQUEST", "unknown method: no.such.method")
    await expect_error(admin.call("chat.history", {}), "INVALID_REQUEST",
                       "invalid chat.history params: must have required property 'sessionKey'")  # fmt: skip
    await expect_error(admin.call("sessions.list", {"limit": 0}), "INVALID_REQUEST",
                       "invalid sessions.list params: at /limit: must be >= 1")  # fmt: skip
    await expect_error(admin.call("sessions.patch", {"key": "main", "sendPolicy": "maybe"}), "INVALID_REQUEST",
                       "invalid sessions.patch params: at /sendPolicy: must be equal to one of the allowed values")  # fmt: skip
    await expect_error(admin.call("sessions.reset", {"key": "main", "extra": 1}), "INVALID_REQUEST",
                       "invalid sessions.reset params: must NOT have additional properties (extra)")  # fmt: skip
    await expect_error(admin.call("sessions.patch", {"key": "agent:ops", "label": "x"}), "INVALID_REQUEST",
                       'invalid sessions.patch params: malformed session key "agent:ops"')  # fmt: skip
    assert (await admin.call("health"))["ok"] is True

    reader = await client(live_gateway, scopes=["operator.read"])
    assert isinstance((await reader.call("sessions.list"))["sessions"], list)
    error = await expect_error(reader.call("sessions.create", {}), "FORBIDDEN", "missing scope: operator.write", "MISSING_SCOPE")
    assert error.details == {"code": "MISSING_SCOPE", "missingScope": "operator.write", "requiredScopes": ["operator.write"]}
    await expect_error(reader.call("sessions.patch", {"key": "main"}), "FORBIDDEN", "missing scope: operator.write")
    await expect_error(reader.call("chat.inject", {"sessionKey": "main", "message": "x"}), "FORBIDDEN")
    assert (await reader.call("chat.history", {"sessionKey": "main"}))["messages"] == []

    writer = await client(live_gateway, scopes=["operator.write"])
    assert (await writer.call("sessions.create", {}))["ok"] is True
    assert (await writer.call("sessions.list"))["count"] >= 1  # write implies read
    await expect_error(writer.call("sessions.delete", {"key": "x"}), "FORBIDDEN", detail="MISSING_SCOPE")
    # sessions.patch is checked per field: chat-client fields need write, the others admin,
    # and a refused patch changes nothing (not even its write-level fields).
    patched = await writer.call("sessions.patch", {"key": "main", "label": "mine", "thinkingLevel": "low"})
    assert patched["entry"]["label"] == "mine"
    await expect_error(writer.call("sessions.patch", {"key": "main", "label": "theirs", "verboseLevel": "on"}),
                       "FORBIDDEN", "missing scope: operator.admin", "MISSING_SCOPE")  # fmt: skip
    rows = (await writer.call("sessions.list"))["sessions"]
    assert [row.get("label") for row in rows if row["key"] == "agent:main:main"] == ["mine"]
    assert (await admin.call("sessions.patch", {"key": "main", "verboseLevel": "on"}))["ok"] is True
    for gw in (admin, reader, writer):
        await gw.close()


async def test_core_methods(ws_client):
    """health, status and agents.list payloads."""
    await ws_client.call("sessions.create", {"key": "main"})
    health = await ws_client.call("health", {})
    assert health["ok"] is True and isinstance(health["ts"], int) and isinstance(health["durationMs"], int)
    assert health["defaultAgentId"] == "main" and health["sessions"]["count"] >= 1
    assert health["agents"][0]["agentId"] == "main" and health["heartbeatSeconds"] == 1800
    status = await ws_client.call("status", {})
    assert status["sessions"]["count"] >= 1 and status["sessions"]["recent"][0]["key"] == "agent:main:main"
    assert status["heartbeat"]["defaultAgentId"] == "main"
    agents = await ws_client.call("agents.list", {})
    assert agents["defaultId"] == "main" and agents["mainKey"] == "main" and agents["scope"] == "per-sender"
    assert [a["id"] for a in agents["agents"]] == ["main"]


# --- session methods ----------------------------------------------------------------------------


async def test_session_create_list_resolve(ws_client):
    gw = ws_client
    created = await gw.call("sessions.create", {"label": "board"})
    assert re.fullmatch(r"agent:main:dashboard:[0-9a-f-]{36}", created["key"])
    assert created["sessionId"] == created["entry"]["sessionId"] and created["entry"]["label"] == "board"
    assert created["runStarted"] is False
    main = await gw.call("sessions.create", {"key": "MAIN"})
    assert main["key"] == "agent:main:main" and main["entry"]["isMain"] is True
    await expect_error(gw.call("sessions.create", {"key": "main"}), "INVALID_REQUEST", "session already exists: agent:main:main")
    await expect_error(gw.call("sessions.create", {"agentId": "ghost"}), "INVALID_REQUEST",
                       "unknown agent id: ghost", "UNKNOWN_AGENT_ID")  # fmt: skip
    await expect_error(gw.call("sessions.create", {"parentSessionKey": "nope"}), "INVALID_REQUEST",
                       "unknown parent session: agent:main:nope")  # fmt: skip
    await expect_error(gw.call("sessions.create", {"label": "board"}), "INVALID_REQUEST",
                       "label already in use: board", "LABEL_IN_USE")  # fmt: skip
    await gw.call("sessions.create", {"key": "agent:main:cron:job:run:r1"})

    listed = await gw.call("sessions.list", {})
    assert [row["key"] for row in listed["sessions"]] == ["agent:main:main", created["key"]]  # newest first, cron run hidden
    assert listed["count"] == 2 and listed["defaults"]["model"] == "scripted"
    assert (await gw.call("sessions.list", {"label": "board"}))["sessions"][0]["key"] == created["key"]
    assert (await gw.call("sessions.list", {"search": "dashboard", "limit": 5}))["count"] == 1

    assert await gw.call("sessions.resolve", {"key": "main"}) == {"ok": True, "key": "agent:main:main"}
    assert (await gw.call("sessions.resolve", {"label": "board"}))["key"] == created["key"]
    assert (await gw.call("sessions.resolve", {"sessionId": main["sessionId"]}))["key"] == "agent:main:main"
    for params, message in (
        ({"key": "main", "label": "board"}, "Provide either key, sessionId, or label (not multiple)"),
        ({}, "Either key, sessionId, or label is required"),
        ({"key": "ghost"}, "No session found: agent:main:ghost"),
        ({"label": "nobody"}, "No session found with label: nobody"),
        ({"sessionId": "nope"}, "No session found: nope"),
    ):
        await expect_error(gw.call("sessions.resolve", params), "INVALID_REQUEST", message)

    started = await gw.call("sessions.create", {"key": "kickoff", "message": "hello"})
    assert started["runStarted"] is True and started["runId"] and started["key"] == "agent:main:kickoff"


async def test_session_patch_reset_delete(ws_client):
    gw = ws_client
    patched = await gw.call("sessions.patch", {"key": "main", "label": "hub", "thinkingLevel": "medium",
                                               "sendPolicy": "deny", "queueMode": "collect"})  # fmt: skip
    assert patched["ok"] is True and patched["key"] == "agent:main:main" and patched["path"]
    assert patched["entry"]["label"] == "hub" and patched["entry"]["thinkingLevel"] == "medium"
    assert patched["resolved"] == {"modelProvider": "offline", "model": "scripted"}
    kept = await gw.call("sessions.patch", {"key": "agent:main:main", "verboseLevel": "on"})
    assert kept["entry"]["label"] == "hub" and kept["entry"]["queueMode"] == "collect"  # absent = keep
    await expect_error(gw.call("sessions.patch", {"key": "other", "label": "hub"}), "INVALID_REQUEST",
                       "label already in use: hub", "LABEL_IN_USE")  # fmt: skip
    await expect_error(gw.call("sessions.patch", {"key": "other", "label": "x" * 65}), "INVALID_REQUEST",
                       "invalid label: too long (max 64)")  # fmt: skip
    await expect_error(gw.call("sessions.patch", {"key": "main", "spawnedBy": "agent:main:x"}), "INVALID_REQUEST",
                       "spawnedBy is only supported for subagent:* sessions")  # fmt: skip
    await expect_error(gw.call("sessions.patch", {"key": "main", "thinkingLevel": "lots"}), "INVALID_REQUEST",
                       "invalid thinkingLevel (use off|minimal|low|medium|high|adaptive)")  # fmt: skip
    await gw.call("sessions.patch", {"key": "main", "sendPolicy": None})

    await gw.call("chat.inject", {"sessionKey": "main", "message": "old note"})
    before = await gw.call("chat.history", {"sessionKey": "main"})
    reset = await gw.call("sessions.reset", {"key": "main", "reason": "new"})
    assert reset["ok"] is True and reset["key"] == "agent:main:main"
    assert reset["entry"]["sessionId"] != before["sessionId"]
    assert reset["entry"]["label"] == "hub" and reset["entry"]["thinkingLevel"] == "medium"
    after = await gw.call("chat.history", {"sessionKey": "main"})
    assert after["messages"] == [] and after["sessionId"] == reset["entry"]["sessionId"]

    await expect_error(gw.call("sessions.delete", {"key": "main"}), "INVALID_REQUEST",
                       "Cannot delete the main session (agent:main:main).", "MAIN_SESSION_DELETE")  # fmt: skip
    await gw.call("sessions.create", {"key": "scratch"})
    deleted = await gw.call("sessions.delete", {"key": "scratch"})
    assert deleted["ok"] is True and deleted["deleted"] is True and deleted["key"] == "agent:main:scratch"
    again = await gw.call("sessions.delete", {"key": "scratch"})
    assert again["deleted"] is False
    await expect_error(gw.call("sessions.get", {"key": "scratch"}), "INVALID_REQUEST",
                       "session not found: agent:main:scratch", "SESSION_NOT_FOUND")  # fmt: skip
    detail = await gw.call("sessions.get", {"key": "main"})
    assert detail["session"]["label"] == "hub" and detail["messages"] == []


async def test_webchat_clients_cannot_patch_or_delete(live_gateway):
    webchat = await client(live_gateway, client={"id": "webchat-ui", "version": "1", "platform": "web", "mode": "webchat"})
    await expect_error(webchat.call("sessions.patch", {"key": "main", "label": "x"}), "INVALID_REQUEST",
                       "webchat clients cannot patch sessions; use chat.send for session-scoped updates")  # fmt: skip
    await expect_error(webchat.call("sessions.delete", {"key": "other"}), "INVALID_REQUEST",
                       "webchat clients cannot delete sessions; use chat.send for session-scoped updates")  # fmt: skip
    assert isinstance((await webchat.call("sessions.list"))["sessions"], list)  # reads are fine
    await webchat.close()


async def test_chat_inject_and_history(ws_client):
    gw = ws_client
    await expect_error(gw.call("chat.inject", {"sessionKey": "main", "message": "x"}), "INVALID_REQUEST",
                       "session not found", "SESSION_NOT_FOUND")  # fmt: skip
    injected = await gw.call("chat.inject", {"sessionKey": "main", "message": "note", "label": "cli", "createIfMissing": True})
    assert injected["ok"] is True and injected["messageId"]
    big = await gw.call("chat.inject", {"sessionKey": "main", "message": "z" * 150_000})
    history = await gw.call("chat.history", {"sessionKey": "agent:main:main", "limit": 10})
    assert history["sessionKey"] == "agent:main:main" and history["sessionId"]
    first, second = history["messages"]
    assert first["role"] == "assistant" and first["stopReason"] == "injected"
    assert first["content"] == [{"type": "text", "text": "[cli]\n\nnote"}] and first["usage"]["totalTokens"] == 0
    assert first["__openclaw"]["id"] == injected["messageId"] and first["__openclaw"]["seq"] == 1
    assert second["__openclaw"]["id"] == big["messageId"]
    text = second["content"][0]["text"]
    assert len(text.encode()) <= 100 * 1024 and "[truncated: " in text
    assert len((await gw.call("chat.history", {"sessionKey": "main", "limit": 1}))["messages"]) == 1
    await expect_error(gw.call("chat.history", {"sessionKey": "main", "limit": 1001}), "INVALID_REQUEST",
                       "invalid chat.history params: at /limit: must be <= 1000")  # fmt: skip
    await expect_error(gw.call("chat.inject", {"sessionKey": "main", "message": "x", "label": "l" * 101}), "INVALID_REQUEST")

    await gw.call("sessions.patch", {"key": "main", "sendPolicy": "deny"})
    await expect_error(gw.call("chat.inject", {"sessionKey": "main", "message": "blocked"}), "INVALID_REQUEST",
                       "send blocked by session policy", "SEND_BLOCKED")  # fmt: skip
    assert len((await gw.call("chat.history", {"sessionKey": "main"}))["messages"]) == 2
    preview = await gw.call("sessions.preview", {"keys": ["main", "ghost"], "limit": 1, "maxChars": 20})
    assert [p["status"] for p in preview["previews"]] == ["ok", "missing"]
    assert preview["previews"][0]["items"][0]["text"].endswith("…")


async def test_sessions_subscribe_receives_changes(live_gateway):
    """After sessions.subscribe, a patch by another client arrives as sessions.changed."""
    watcher = await client(live_gateway, scopes=["operator.read"])
    assert await watcher.call("sessions.subscribe", {}) == {"subscribed": True}
    actor = await client(live_gateway)
    await actor.call("sessions.patch", {"key": "main", "label": "watched"})
    frame = await watcher.wait_event("sessions.changed", lambda p: p.get("reason") == "patch")
    payload = frame["payload"]
    assert payload["sessionKey"] == "agent:main:main" and payload["agentId"] == "main"
    assert payload["session"]["label"] == "watched" and isinstance(payload["ts"], int)
    assert isinstance(frame["seq"], int) and frame["seq"] >= 1

    await actor.call("sessions.reset", {"key": "main"})
    reset = await watcher.wait_event("sessions.changed", lambda p: p.get("reason") == "reset")
    assert reset["seq"] > frame["seq"]
    assert await watcher.call("sessions.unsubscribe", {}) == {"subscribed": False}
    await actor.call("sessions.patch", {"key": "main", "label": "quiet"})
    with pytest.raises(asyncio.TimeoutError):
        await watcher.wait_event("sessions.changed", lambda p: p["session"].get("label") == "quiet", timeout=1)
    for gw in (watcher, actor):
        await gw.close()

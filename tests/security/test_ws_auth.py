"""WebSocket access control against a running gateway: the scope of every registered
method, and the Origin rule for browser (cookie) sessions.

Scopes: for each method and each connection scope set, a request with params of the
wrong type answers FORBIDDEN/MISSING_SCOPE when the connection lacks the method's scope
and INVALID_REQUEST (params refused) when it has it: the scope is checked first, and
nothing runs either way.

Origin: a staff Django session cookie authenticates a socket only from an allowed
Origin (ALLOWED_HOSTS / CSRF_TRUSTED_ORIGINS / the gateway's own host); token clients
(the CLI sends no Origin) are unaffected.
"""

from __future__ import annotations

import json

import pytest
import websockets
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from websockets.sync.client import connect

from sessions_app import protocol
from sessions_app.rpc import ADMIN, READ, WRITE, RpcContext, get_method, method_names
from sessions_app.schema import validate
from tests.support.live import start_gateway
from tests.support.ws import DEFAULT_CONNECT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

PROBE = ["scope-probe"]  # never valid params: a method that passes the scope check refuses it
CONNECTIONS = {
    "none": [],
    "read": [READ],
    "write": [WRITE],
    "admin": [ADMIN],
    "read+write": [READ, WRITE],
    "unknown": ["operator.approvals", "operator.pairing"],
}


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        started = start_gateway(tmp_path_factory.mktemp("ws-auth"))
    yield started
    started.stop()


def open_socket(gateway, **kwargs):
    ws = connect(gateway.ws_url, open_timeout=10, compression=None, legacy=True, **kwargs)
    json.loads(ws.recv(timeout=10))  # connect.challenge
    return ws


def handshake(ws, params: dict) -> dict:
    ws.send(json.dumps({"type": "req", "id": "c", "method": "connect", "params": params}))
    while True:
        frame = json.loads(ws.recv(timeout=10))
        if frame.get("type") == "res":
            return frame


def request(ws, method: str, params, frame_id: str) -> dict:
    ws.send(json.dumps({"type": "req", "id": frame_id, "method": method, "params": params}))
    while True:
        frame = json.loads(ws.recv(timeout=10))
        if frame.get("type") == "res" and frame.get("id") == frame_id:
            return frame


def close_code(ws) -> int | None:
    try:
        while True:
            ws.recv(timeout=10)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


# --- scopes, every method -----------------------------------------------------------------


def allowed(scopes: list[str], required: str) -> bool:
    return RpcContext(scopes=frozenset(scopes)).has_scope(required)


def test_the_scope_lattice():
    assert allowed([ADMIN], WRITE) and allowed([ADMIN], READ) and allowed([WRITE], READ)
    assert not allowed([READ], WRITE) and not allowed([WRITE], ADMIN) and not allowed([], READ)


@pytest.mark.parametrize("connection", sorted(CONNECTIONS))
def test_every_method_enforces_its_scope(gateway, connection):
    scopes = CONNECTIONS[connection]
    ws = open_socket(gateway)
    hello = handshake(ws, {**DEFAULT_CONNECT, "scopes": scopes, "auth": {"token": gateway.token}})
    assert hello["ok"], hello
    assert hello["payload"]["auth"]["scopes"] == scopes
    checked = {"forbidden": 0, "passed": 0}
    for method in method_names():
        required = get_method(method).scope
        assert required in (READ, WRITE, ADMIN), (method, required)
        assert validate(get_method(method).schema, PROBE), f"{method} would accept the probe"
        res = request(ws, method, PROBE, f"{connection}:{method}")
        assert res["ok"] is False, res
        if allowed(scopes, required):
            assert res["error"]["code"] == "INVALID_REQUEST", (method, res)
            assert res["error"]["message"].startswith(f"invalid {method} params"), (method, res)
            checked["passed"] += 1
        else:
            assert res["error"]["code"] == "FORBIDDEN", (method, res)
            assert res["error"]["details"] == {
                "code": "MISSING_SCOPE", "missingScope": required, "requiredScopes": [required],
            }, (method, res)  # fmt: skip
            checked["forbidden"] += 1
    ws.close()
    assert sum(checked.values()) == len(method_names())


def test_read_only_connection_still_reads(gateway):
    ws = open_socket(gateway)
    assert handshake(ws, {**DEFAULT_CONNECT, "scopes": [READ], "auth": {"token": gateway.token}})["ok"]
    assert request(ws, "health", {}, "h")["ok"] is True
    assert request(ws, "sessions.list", {}, "l")["ok"] is True
    ws.close()


# --- the Origin rule for cookie sessions -----------------------------------------------------


def staff_cookie(*, staff: bool = True) -> str:
    """A Django session for a (staff) user, signed with the gateway's SECRET_KEY."""
    user = get_user_model().objects.create_user(f"u{staff}{get_user_model().objects.count()}", is_staff=staff)
    with override_settings(SECRET_KEY="test-secret"):
        client = Client()
        client.force_login(user)
        return f"sessionid={client.cookies['sessionid'].value}"


def cookie_handshake(gateway, *, cookie: str | None, origin: str | None, token: str | None = None):
    headers = {"Cookie": cookie} if cookie else None
    ws = open_socket(gateway, origin=origin, additional_headers=headers)
    params = {**DEFAULT_CONNECT, "client": {**DEFAULT_CONNECT["client"], "id": "webchat-ui", "mode": "webchat"}}
    if token:
        params["auth"] = {"token": token}
    return ws, handshake(ws, params)


def test_cookie_session_from_the_gateways_own_origin_is_accepted(gateway):
    cookie = staff_cookie()
    for origin in (gateway.http_url, f"http://localhost:{gateway.port}"):
        ws, res = cookie_handshake(gateway, cookie=cookie, origin=origin)
        assert res["ok"], res
        assert res["payload"]["auth"]["method"] == "session"
        assert request(ws, "health", {}, "h")["ok"] is True
        ws.close()


@pytest.mark.parametrize("origin", ["https://evil.example", "null", None, "http://127.0.0.1.evil.example"])
def test_cookie_session_from_another_origin_is_refused(gateway, origin):
    ws, res = cookie_handshake(gateway, cookie=staff_cookie(), origin=origin)
    assert res["ok"] is False
    assert res["error"]["details"]["code"] == "ORIGIN_NOT_ALLOWED", res
    assert close_code(ws) == 1008


def test_token_clients_need_no_origin_and_may_have_any(gateway):
    for origin in (None, "https://elsewhere.example"):
        ws, res = cookie_handshake(gateway, cookie=None, origin=origin, token=gateway.token)
        assert res["ok"] and res["payload"]["auth"]["method"] == "token", res
        ws.close()
    ws, res = cookie_handshake(gateway, cookie=staff_cookie(), origin="https://evil.example", token=gateway.token)
    assert res["ok"] and res["payload"]["auth"]["method"] == "token", res
    ws.close()


def test_non_staff_cookie_is_no_credential(gateway):
    ws, res = cookie_handshake(gateway, cookie=staff_cookie(staff=False), origin=gateway.http_url)
    assert res["ok"] is False and res["error"]["details"]["code"] == "AUTH_TOKEN_MISMATCH", res
    assert close_code(ws) == 1008


@pytest.mark.parametrize(
    ("origin", "host", "expected"),
    [
        ("http://127.0.0.1:18789", None, True),
        ("http://localhost:3000", None, True),  # ALLOWED_HOSTS ignores the port, as Channels does
        ("http://[::1]:18789", None, True),
        ("https://gw.example:8443", "gw.example:8443", True),  # the request's own Host
        ("https://gw.example:8443", "gw.example:9000", False),
        ("https://evil.example", "127.0.0.1:18789", False),
        ("http://127.0.0.1.evil.example", None, False),
        ("null", None, False),
        ("", None, False),
        (None, None, False),
        ("file:///etc/passwd", None, False),
        ("javascript:alert(1)", None, False),
    ],
)
def test_origin_allowed(origin, host, expected):
    assert protocol.origin_allowed(origin, host=host) is expected


@override_settings(CSRF_TRUSTED_ORIGINS=["https://ops.example.com"])
def test_origin_allowed_honours_csrf_trusted_origins():
    assert protocol.origin_allowed("https://ops.example.com") is True
    assert protocol.origin_allowed("http://ops.example.com") is False

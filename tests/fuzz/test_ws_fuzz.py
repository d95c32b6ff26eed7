"""A hypothesis-driven fuzzer of the WebSocket protocol against a real running gateway.

Malformed frames, wrong types, unknown methods, huge payloads, and params of the wrong
shape for every registered method (from each method's own schema). The server answers
error frames (or closes with the protocol's code where the protocol says so), stays up
(a ``health`` call succeeds afterwards) and changes nothing (row counts of sessions,
runs, deliveries, system events and cron jobs are unchanged).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from cron_app.models import CronJob
from sessions_app.models import Delivery, Run, Session, SystemEvent
from sessions_app.protocol import REQUEST_SCHEMA
from sessions_app.rpc import get_method, method_names
from sessions_app.schema import validate
from tests.support.live import start_gateway
from tests.support.ws import DEFAULT_CONNECT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

QUIET = {"agents": {"defaults": {"heartbeat": {"every": "0m"}}}}  # no background turns while counting
FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
MAX_PAYLOAD = 26_214_400
PRECONNECT_MAX = 65_536
MODELS = (Session, Run, Delivery, SystemEvent, CronJob)
STATS: dict[str, int] = {}  # examples sent per test, for docs/reliability.md


class Conn:
    """A blocking protocol client: handshake, one request at a time, events skipped."""

    def __init__(self, url: str, token: str, **connect_overrides) -> None:
        self.url = url
        self.ws = connect(url, max_size=2**26, open_timeout=10, close_timeout=5, compression=None, legacy=True)
        self.challenge = json.loads(self.ws.recv(timeout=10))
        params = {**DEFAULT_CONNECT, "auth": {"token": token}, **connect_overrides}
        self.hello = self.request("connect", params)

    def send(self, data: str | bytes) -> None:
        self.ws.send(data)

    def response(self, frame_id: str, timeout: float = 10) -> dict[str, Any]:
        while True:
            frame = json.loads(self.ws.recv(timeout=timeout))
            if frame.get("type") == "res" and frame.get("id") == frame_id:
                return frame

    def request(self, method: str, params: Any = None, *, with_params: bool = True) -> dict[str, Any]:
        frame_id = str(uuid.uuid4())
        frame = {"type": "req", "id": frame_id, "method": method}
        if with_params:
            frame["params"] = params
        self.send(json.dumps(frame))
        return self.response(frame_id)

    def close_code(self, timeout: float = 10) -> int | None:
        try:
            while True:
                self.ws.recv(timeout=timeout)
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None

    def close(self) -> None:
        self.ws.close()


def row_counts() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in MODELS}


def count(name: str) -> None:
    STATS[name] = STATS.get(name, 0) + 1


def assert_error(res: dict[str, Any], code: str = "INVALID_REQUEST", prefix: str | None = None) -> None:
    assert res["type"] == "res" and res["ok"] is False, res
    assert res["error"]["code"] == code, res
    assert isinstance(res["error"]["message"], str) and res["error"]["message"], res
    if prefix is not None:
        assert res["error"]["message"].startswith(prefix), res


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker, tmp_path_factory):
    """One gateway for the module (starting one takes seconds); every test checks it is still up."""
    with django_db_blocker.unblock():
        started = start_gateway(tmp_path_factory.mktemp("ws-fuzz"), config=QUIET)
    yield started
    started.stop()


@pytest.fixture
def conn(gateway):
    """An admin connection; afterwards the gateway still answers ``health`` on a new one."""
    client = Conn(gateway.ws_url, gateway.token)
    yield client
    client.close()
    check = Conn(gateway.ws_url, gateway.token)
    assert check.request("health", {})["ok"] is True
    check.close()
    assert gateway.process.poll() is None, gateway.log()


@pytest.fixture
def unchanged():
    """The rows of the gateway's state are the same after the test as before it."""
    before = row_counts()
    yield
    assert row_counts() == before


# --- strategies ------------------------------------------------------------------------

JSON_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
)  # fmt: skip
JSON = st.recursive(
    JSON_SCALAR, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=8), c, max_size=4)),
    max_leaves=12,
)  # fmt: skip
METHODS = method_names()


def _types(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type")
    return set(declared if isinstance(declared, list) else [declared] if declared else [])


@st.composite
def wrong_value(draw, schema: dict[str, Any]):
    """A JSON value the property schema refuses (or any value, filtered later)."""
    types = _types(schema)
    options = [JSON]
    if types & {"integer", "number"}:
        options += [st.just(2**60), st.just(-(2**60)), st.floats(min_value=0.5, max_value=0.6), st.text(max_size=5)]
    if "string" in types:
        options += [st.integers(), st.just(""), st.just("x" * 70_000), st.lists(st.text(max_size=3), max_size=2)]
    if "enum" in schema:
        options.append(st.text(max_size=12))
    return draw(st.one_of(*options))


@st.composite
def wrong_params(draw, method: str):
    """Params the method's schema refuses: another type, a bad property, a missing
    required one or an extra one where none are allowed."""
    schema = get_method(method).schema or {}
    properties = schema.get("properties") or {}
    kinds = ["not-an-object"]
    if properties:
        kinds.append("bad-property")
    if schema.get("required"):
        kinds.append("missing-required")
    if schema.get("additionalProperties") is False:
        kinds.append("extra-property")
    kind = draw(st.sampled_from(kinds))
    if kind == "not-an-object":
        return draw(st.one_of(st.booleans(), st.integers(), st.text(max_size=20), st.lists(JSON_SCALAR, max_size=3)))
    if kind == "bad-property":
        name = draw(st.sampled_from(sorted(properties)))
        return {name: draw(wrong_value(properties[name]))}
    if kind == "missing-required":
        present = [name for name in properties if name not in schema["required"]]
        return {name: draw(JSON) for name in draw(st.lists(st.sampled_from(present), unique=True, max_size=2))} if present else {}
    return {draw(st.text(min_size=1, max_size=10).filter(lambda n: n not in properties)): draw(JSON)}


def refused(method: str, params: Any) -> bool:
    schema = get_method(method).schema
    return schema is not None and bool(validate(schema, params))


# --- params of the wrong shape, every method ------------------------------------------------


def test_every_method_refuses_params_of_every_wrong_shape(conn, unchanged):
    """For each registered method: a non-object, each property with a wrong type, no
    required property and an unknown property → ``invalid <method> params``."""
    for method in METHODS:
        schema = get_method(method).schema or {}
        properties = schema.get("properties") or {}
        cases: list[Any] = [["a"], "text", 7, True]
        cases += [{name: {"nested": [1]} if _types(prop) - {"object"} else 3} for name, prop in properties.items()]
        if schema.get("required"):
            cases.append({})
        if schema.get("additionalProperties") is False:
            cases.append({"zzUnknown": 1})
        for params in (p for p in cases if refused(method, p)):
            count("wrong-shape (table)")
            assert_error(conn.request(method, params), prefix=f"invalid {method} params")


@FUZZ
@given(data=st.data())
def test_fuzzed_params_answer_invalid_params_and_change_nothing(conn, unchanged, data):
    method = data.draw(st.sampled_from(METHODS), label="method")
    params = data.draw(wrong_params(method), label="params")
    if not refused(method, params):
        return
    count("wrong-shape (hypothesis)")
    assert_error(conn.request(method, params), prefix=f"invalid {method} params")


# --- frames, methods ---------------------------------------------------------------------


@FUZZ
@given(frame=st.one_of(
    JSON,
    st.fixed_dictionaries({}, optional={"type": JSON, "id": JSON, "method": JSON, "params": JSON}),
    st.fixed_dictionaries({"type": st.just("req"), "id": st.text(max_size=5), "method": JSON}),
    st.fixed_dictionaries({"type": st.sampled_from(["res", "event", "REQ", ""]), "id": st.text(min_size=1), "method": st.just("health")}),
))  # fmt: skip
def test_malformed_frames_answer_invalid_request(conn, unchanged, frame):
    """Well-formed JSON that is not a request frame: an INVALID_REQUEST answer with the
    frame's id (``""`` when it has none); the connection stays open."""
    if not validate(REQUEST_SCHEMA, frame):
        return
    count("malformed frame")
    conn.send(json.dumps(frame))
    frame_id = frame["id"] if isinstance(frame, dict) and isinstance(frame.get("id"), str) else ""
    assert_error(conn.response(frame_id), prefix="invalid request frame")


@FUZZ
@given(method=st.one_of(st.text(min_size=1, max_size=40), st.sampled_from(METHODS).map(lambda m: m.upper() + " ")))
def test_unknown_methods_answer_invalid_request(conn, unchanged, method):
    if method in METHODS:
        return
    count("unknown method")
    res = conn.request(method, {})
    assert_error(res)
    assert res["error"]["message"] == f"unknown method: {method}"


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(raw=st.one_of(
    st.text(min_size=1, max_size=200).filter(lambda t: not _is_json(t)),
    st.binary(min_size=1, max_size=200).filter(lambda b: not _is_json(b.decode("utf-8", "replace"))),
))  # fmt: skip
def test_frames_that_are_not_json_close_the_socket_and_the_server_stays_up(gateway, unchanged, raw):
    """Not JSON (text or binary): the server closes that socket (1000), nothing else."""
    count("not JSON")
    client = Conn(gateway.ws_url, gateway.token)
    client.send(raw)
    assert client.close_code() == 1000
    again = Conn(gateway.ws_url, gateway.token)
    assert again.request("health", {})["ok"] is True
    again.close()


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(frame=st.one_of(JSON, st.fixed_dictionaries({"type": st.just("req"), "id": st.text(max_size=4),
                                                    "method": st.text(max_size=12), "params": JSON})))  # fmt: skip
def test_anything_before_connect_is_refused_and_closes(gateway, unchanged, frame):
    """Before the handshake, any frame but a valid connect gets an error and close 1008."""
    if isinstance(frame, dict) and frame.get("method") == "connect":
        return
    count("pre-connect frame")
    ws = connect(gateway.ws_url, open_timeout=10, compression=None, legacy=True)
    json.loads(ws.recv(timeout=10))
    ws.send(json.dumps(frame))
    res = json.loads(ws.recv(timeout=10))
    assert_error(res, prefix="invalid handshake")
    try:
        while True:
            ws.recv(timeout=10)
    except websockets.ConnectionClosed as closed:
        assert closed.rcvd.code == 1008


# --- payload sizes -----------------------------------------------------------------------


def _padded_health(total: int, frame_id: str) -> str:
    """A health request of exactly ``total`` bytes (the padding is an unknown param)."""
    head = json.dumps({"type": "req", "id": frame_id, "method": "health", "params": {"pad": ""}})
    pad = total - len(head.encode())
    return head.replace('"pad": ""', '"pad": "' + "x" * pad + '"')


def test_payload_limits(gateway, unchanged):
    """Up to maxPayload a frame is answered; one byte more closes the socket with 1009.
    Before connect the cap is 64 KiB. The server stays up."""
    client = Conn(gateway.ws_url, gateway.token)
    assert client.hello["payload"]["policy"]["maxPayload"] == MAX_PAYLOAD
    client.send(_padded_health(MAX_PAYLOAD, "at-limit"))
    assert_error(client.response("at-limit", timeout=30), prefix="invalid health params")
    client.send(_padded_health(MAX_PAYLOAD + 1, "over"))
    assert client.close_code(timeout=30) == 1009
    count("payload")

    ws = connect(gateway.ws_url, open_timeout=10, compression=None, legacy=True)
    ws.recv(timeout=10)
    params = {**DEFAULT_CONNECT, "auth": {"token": gateway.token}, "userAgent": "x" * (PRECONNECT_MAX + 1)}
    ws.send(json.dumps({"type": "req", "id": "c", "method": "connect", "params": params}))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd.code == 1009

    again = Conn(gateway.ws_url, gateway.token)
    assert again.request("health", {})["ok"] is True
    again.close()


def test_many_bad_frames_in_a_burst_are_each_answered(conn, unchanged):
    """500 invalid requests sent without waiting: 500 error answers, in any order."""
    ids = [f"burst-{n}" for n in range(500)]
    for n, frame_id in enumerate(ids):
        method = METHODS[n % len(METHODS)]
        conn.send(json.dumps({"type": "req", "id": frame_id, "method": method, "params": ["wrong"]}))
    answered = {}
    while len(answered) < len(ids):
        frame = json.loads(conn.ws.recv(timeout=30))
        if frame.get("type") == "res":
            answered[frame["id"]] = frame
    assert set(answered) == set(ids)
    for frame in answered.values():
        assert_error(frame)
    STATS["burst"] = len(ids)


def test_fuzz_statistics_are_reported(capsys):
    """Prints how many examples each fuzz test sent (docs/reliability.md quotes it)."""
    with capsys.disabled():
        print("\nws fuzz examples:", json.dumps(STATS, sort_keys=True))

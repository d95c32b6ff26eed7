"""PostgreSQL and Redis go away under load and come back (DESIGN §7, §8 rules 1, 5, 6).

These tests start their own PostgreSQL cluster and Redis server (the machine's are
shared) and kill them with the gateway running: while the database is down the gateway
answers ``UNAVAILABLE`` with ``retryable: true`` and stays up; once it is back the
gateway recovers by itself, every accepted message is executed once and a retried one
(same idempotency key) is not duplicated. While Redis is down requests still answer
(accepted, or ``UNAVAILABLE``), turns still run (the engines poll the database), and a
client that reconnects and resumes with ``afterSeq`` gets exactly the events it missed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
import websockets

from tests.support.cluster import Cluster, PrivatePostgres, PrivateRedis, private_services_available
from tests.support.ws import GatewayCallError, GatewayClient

from ..scale.conftest import needs_postgres_and_redis

pytestmark = [
    pytest.mark.live,
    needs_postgres_and_redis,  # run once, in the PostgreSQL + Redis leg (they bring their own servers)
    pytest.mark.skipif(not private_services_available(), reason="needs initdb/pg_ctl and redis-server"),
    pytest.mark.timeout(240),
]
RULES = [{"regex": r"^msg (\S+)", "reply": "got {1}", "delayMs": 100}]
FIGURES: dict[str, object] = {}


@pytest.fixture(scope="module")
def services():
    base = Path(tempfile.mkdtemp(prefix="openclaw-faults-"))
    base.chmod(0o755)  # the postgres user must reach its data directory
    pg, redis = PrivatePostgres(base / "pg"), PrivateRedis(base / "redis")
    pg.start()
    redis.start()
    yield SimpleNamespace(pg=pg, redis=redis, base=base)
    redis.close()
    pg.close()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def cluster(services, tmp_path, request):
    """A fresh, migrated database on the private cluster, and a gateway cluster on it."""
    name = f"faults_{request.node.name[:40]}".lower().replace("-", "_")
    url = services.pg.create_database(name)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": RULES}))
    made = Cluster(tmp_path / "cluster", database_url=url, redis_url=services.redis.url,
                   config={"agents": {"defaults": {"heartbeat": {"every": "0m"}}}},
                   env={"OPENCLAW_OFFLINE_RULES": str(rules), "OPENCLAW_ENGINE_POLL_S": "0.2",
                        "OPENCLAW_CHANNEL_PREFIX": f"oc-{name}"})  # fmt: skip
    made.manage("migrate", "--noinput")
    yield made
    made.stop()


class Sender:
    """Sends ``chat.send`` requests in a loop, reconnecting when the socket drops;
    records each outcome: ``ok`` or the error code (with ``retryable``)."""

    def __init__(self, process) -> None:
        self.process = process
        self.client: GatewayClient | None = None
        self.outcomes: dict[str, tuple] = {}
        self.sessions: dict[str, str] = {}
        self.count = 0

    async def ensure(self) -> GatewayClient:
        if self.client is None or (self.client.closed is not None and self.client.closed.done()):
            self.client = GatewayClient(self.process.ws_url)
            await self.client.connect(token=self.process.token, timeout=5)
        return self.client

    async def send(self, key: str, session: str | None = None) -> tuple:
        """Send (or resend, to the same session) the message ``key``."""
        session = self.sessions.setdefault(key, session or key)
        started = time.monotonic()
        try:
            client = await self.ensure()
            await client.call("chat.send", {"sessionKey": f"agent:main:{session}", "message": f"msg {key}",
                                            "idempotencyKey": key}, timeout=15)  # fmt: skip
            outcome = ("ok",)
        except GatewayCallError as error:
            outcome = (error.code, error.error.get("retryable"), error.details.get("code"))
        except (OSError, websockets.ConnectionClosed, asyncio.TimeoutError) as exc:
            self.client = None
            outcome = ("DISCONNECTED", type(exc).__name__)
        self.outcomes[key] = outcome
        return (*outcome, round(time.monotonic() - started, 2))

    async def phase(self, name: str, seconds: float, pause: float = 0.1) -> Counter:
        deadline = time.monotonic() + seconds
        results = Counter()
        while time.monotonic() < deadline:
            self.count += 1
            results[(await self.send(f"{name}-{self.count}"))[0]] += 1
            await asyncio.sleep(pause)
        return results

    async def until_ok(self, name: str, timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            self.count += 1
            if (await self.send(f"{name}-{self.count}"))[0] == "ok":
                return time.monotonic() - started
            await asyncio.sleep(0.25)
        raise AssertionError(f"no accepted request within {timeout}s of the restart")

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


async def probe_new_socket(process) -> str:
    """What a client opening a new WebSocket meets (within 5 s)."""
    started = time.monotonic()
    try:
        client = GatewayClient(process.ws_url)
        await client.connect(token=process.token, timeout=5)
        await client.close()
        result = "connected"
    except Exception as exc:  # noqa: BLE001 - reported as is
        result = type(exc).__name__
    return f"{result} after {time.monotonic() - started:.1f}s"


def rest_status(process) -> tuple[int, dict]:
    request = urllib.request.Request(f"{process.http_url}/api/v1/sessions",
                                     headers={"Authorization": f"Bearer {process.token}"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def query(url: str, sql: str, *args):
    with psycopg.connect(url) as conn:
        return conn.execute(sql, args).fetchall()


async def wait_runs_ok(url: str, keys: list[str], timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        rows = dict(query(url, "SELECT run_id, status FROM sessions_app_run WHERE run_id = ANY(%s)", keys))
        if len(rows) == len(keys) and all(status in ("ok", "error", "timeout", "aborted") for status in rows.values()):
            return rows
        assert time.monotonic() < deadline, Counter(rows.values())
        await asyncio.sleep(0.5)


def user_messages(url: str) -> Counter:
    rows = query(url, "SELECT s.key, t.content FROM sessions_app_transcriptentry t "
                      "JOIN sessions_app_session s ON s.id = t.session_id WHERE t.role = 'user'")  # fmt: skip
    return Counter(key for key, _ in rows)


# --- PostgreSQL -----------------------------------------------------------------------------


async def test_postgres_down_answers_unavailable_then_recovers_and_loses_nothing(services, cluster):
    web, _engine = cluster.start_many("web", "engine")
    sender = Sender(web)
    try:
        before = await sender.phase("before", 2)
        assert set(before) == {"ok"}, before
        services.pg.kill()
        down_at = time.monotonic()
        during = await sender.phase("down", 4)
        status, body = await asyncio.to_thread(rest_status, web)
        down_for = time.monotonic() - down_at
        services.pg.start()
        back_in = await sender.until_ok("back", timeout=30)
        after = await sender.phase("after", 2)
        assert set(after) == {"ok"}, after
        retried = [key for key, outcome in sender.outcomes.items() if outcome[0] != "ok"]
        for key in retried:  # the client's retry with the same idempotency key
            assert (await sender.send(key))[0] == "ok"
    finally:
        await sender.close()
    assert status == 503 and body["error"]["code"] == "UNAVAILABLE" and body["error"]["retryable"] is True, body
    unavailable = [o for k, o in sender.outcomes.items() if k.startswith("down-")]
    assert during and all(o[:2] == ("UNAVAILABLE", True) for o in sender.outcomes.values() if o[0] != "ok")
    assert web.alive() and _engine.alive(), (web.log()[-2000:], _engine.log()[-2000:])
    keys = list(sender.outcomes)
    runs = await wait_runs_ok(cluster.database_url, keys)
    assert Counter(runs.values()) == {"ok": len(keys)}
    messages = user_messages(cluster.database_url)
    assert all(messages[f"agent:main:{key}"] == 1 for key in keys), {k: messages[f"agent:main:{k}"] for k in keys}
    FIGURES["postgres"] = {"requests": len(keys) + len(retried), "refused_while_down": dict(during),
                           "recovered_after_restart_s": round(back_in, 2), "retried_ok": len(retried),
                           "down_for_s": round(down_for, 1), "runs_ok": len(keys)}  # fmt: skip
    assert unavailable  # at least one request met the outage


# --- Redis ----------------------------------------------------------------------------------


async def test_redis_down_keeps_turns_running_and_a_resumed_client_misses_nothing(services, cluster):
    web, _engine, _worker = cluster.start_many("web", "engine", "worker")
    watcher = GatewayClient(web.ws_url)
    await watcher.connect(token=web.token)
    sender = Sender(web)
    try:
        await watcher.call("sessions.messages.subscribe", {"key": "agent:main:watched"})
        await watcher.call("chat.send", {"sessionKey": "agent:main:watched", "message": "msg w0", "idempotencyKey": "w0"})
        await watcher.wait_event("chat", lambda p: p.get("runId") == "w0" and p.get("state") == "final", timeout=20)
        last_seen = max(f["payload"]["sessionSeq"] for f in watcher.events if "sessionSeq" in f.get("payload", {}))
        await watcher.close()
        before = await sender.phase("before", 1.5)
        assert set(before) == {"ok"}, before
        services.redis.kill()
        down_at = time.monotonic()
        during = await sender.phase("down", 4, pause=0.2)
        outcome = await sender.send("watched-down", session="watched")  # missed by the watcher
        new_socket = await probe_new_socket(web)
        rest = await asyncio.to_thread(rest_status, web)
        down_for = time.monotonic() - down_at
        services.redis.start()
        back_in = await sender.until_ok("back", timeout=30)
        retried = [key for key, outcome in sender.outcomes.items() if outcome[0] != "ok"]
        for key in retried:
            assert (await sender.send(key))[0] == "ok", sender.outcomes[key]
    finally:
        await sender.close()
    print("\nredis outage outcomes:", Counter(o[0] for o in sender.outcomes.values()), dict(during), outcome,
          new_socket, rest[0])
    assert all(o[0] == "ok" or o[:2] == ("UNAVAILABLE", True) or o[0] == "DISCONNECTED" for o in sender.outcomes.values())
    keys = list(sender.outcomes)
    runs = await wait_runs_ok(cluster.database_url, keys)
    assert Counter(runs.values()) == {"ok": len(keys)}
    messages = user_messages(cluster.database_url)
    assert all(messages[f"agent:main:{key}"] == 1 for key in keys if key != "watched-down")
    assert messages["agent:main:watched"] == 2

    stored = [seq for (seq,) in query(cluster.database_url, "SELECT seq FROM sessions_app_sessionevent "
                                      "WHERE session_key = %s AND seq > %s ORDER BY seq", "agent:main:watched", last_seen)]  # fmt: skip
    resumed = GatewayClient(web.ws_url)
    await resumed.connect(token=web.token)
    try:
        result = await resumed.call("sessions.messages.subscribe", {"key": "agent:main:watched", "afterSeq": last_seen})
        await asyncio.sleep(0.5)
        got = [f["payload"]["sessionSeq"] for f in resumed.events if "sessionSeq" in f.get("payload", {})]
    finally:
        await resumed.close()
    assert result["replayed"] == len(stored) and got == stored, (result, got, stored)
    assert web.alive() and _engine.alive()
    FIGURES["redis"] = {"requests": len(keys) + len(retried), "while_down": dict(during), "watched": outcome[0],
                        "recovered_after_restart_s": round(back_in, 2), "retried_ok": len(retried),
                        "resumed_events": len(got), "down_for_s": round(down_for, 1),
                        "new_socket_while_down": new_socket, "rest_while_down": rest[0]}  # fmt: skip


def test_fault_figures_are_reported(capsys):
    with capsys.disabled():
        print("\nbacking-service fault figures:", FIGURES)

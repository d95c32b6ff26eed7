"""Start real gateway processes on loopback for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    """URL of the test database this pytest process created (the server must share it)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@dataclass
class LiveGateway:
    port: int
    token: str
    process: subprocess.Popen
    state_dir: Path
    log_path: Path
    extra_env: dict = field(default_factory=dict)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        return self.process.returncode


def start_gateway(
    tmp_path: Path,
    *,
    config: dict | None = None,
    token: str = "test-token",
    args: tuple[str, ...] = (),
    env: dict | None = None,
    ready_timeout: float = 30,
) -> LiveGateway:
    """Start ``manage.py gateway`` on a free port against the test database."""
    state_dir = tmp_path / f"state-{time.monotonic_ns()}"
    state_dir.mkdir(parents=True)
    cfg = {"gateway": {"auth": {"mode": "token", "token": token}}} if token else {}
    _merge(cfg, config or {})
    (state_dir / "openclaw.json").write_text(json.dumps(cfg))
    port = free_port()
    log_path = state_dir / "gateway.log"
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "OPENCLAW_STATE_DIR": str(state_dir),
        "OPENCLAW_CONFIG_PATH": str(state_dir / "openclaw.json"),
        "DJANGO_SECRET_KEY": "test-secret",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    full_env.pop("OPENCLAW_TEST_DB_NAME", None)
    if settings.REDIS_URL:
        full_env["REDIS_URL"] = settings.REDIS_URL
    log = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "gateway", "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    gateway = LiveGateway(port=port, token=token, process=process, state_dir=state_dir, log_path=log_path)
    _wait_listening(gateway, ready_timeout)
    return gateway


def _wait_listening(gateway: LiveGateway, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gateway.process.poll() is not None:
            raise RuntimeError(f"gateway exited with {gateway.process.returncode}:\n{gateway.log()}")
        try:
            with socket.create_connection(("127.0.0.1", gateway.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    gateway.stop()
    raise RuntimeError(f"gateway did not listen within {timeout}s:\n{gateway.log()}")


def _merge(base: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def write_rules(directory: Path, rules: list[dict]) -> Path:
    """The offline model's rules file (``OPENCLAW_OFFLINE_RULES``) holding ``rules``."""
    path = Path(directory) / "rules.json"
    path.write_text(json.dumps({"rules": rules}))
    return path

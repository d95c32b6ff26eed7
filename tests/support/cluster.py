"""Real processes for scale-out and fault tests: gateway processes of any role, and a
private PostgreSQL cluster and Redis server that a test may kill and restart.

PostgreSQL and Redis on a machine are shared, so fault tests never restart them: they
start their own on free loopback ports in a temporary directory (``initdb`` + ``pg_ctl``,
as the ``postgres`` user when the tests run as root; ``redis-server --save ''``).
Every wait is bounded.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.live import ROOT, free_port

READY_MARKERS = {"engine": "run engine started", "worker": "running."}


def wait_until(predicate, *, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(interval)


# --- gateway processes ---------------------------------------------------------------------


@dataclass
class GatewayProcess:
    """One ``manage.py gateway --role …`` process (its own process group)."""

    roles: str
    process: subprocess.Popen
    log_path: Path
    port: int | None
    token: str

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def send_signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def descendants(self) -> list[int]:
        """Pids of every live descendant (the django-q2 cluster runs in its own session)."""
        children: dict[int, list[int]] = {}
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(Path(stat).parent.name))
        found, todo = [], [self.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append(child)
                todo.append(child)
        return found

    def kill_tree(self) -> None:
        """SIGKILL the process and all its descendants at once (a machine losing power)."""
        pids = [self.pid, *self.descendants()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=5)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        if self.alive():
            self.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.send_signal(signal.SIGKILL)
                self.process.wait(timeout=5)
        else:
            self.send_signal(signal.SIGKILL)  # children (the django-q2 cluster) of a dead leader
        return self.process.returncode

    def wait_ready(self, timeout: float = 40) -> GatewayProcess:
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"gateway --role {self.roles} exited {self.process.returncode}:\n{self.log()}")
            if self.port is not None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        return True
                except OSError:
                    return False
            return all(READY_MARKERS[role] in self.log() for role in self.roles.split(",") if role in READY_MARKERS)

        wait_until(ready, timeout=timeout, what=f"gateway --role {self.roles} ready")
        return self


@dataclass
class Cluster:
    """Gateway processes sharing one database, one Redis and one config."""

    state_dir: Path
    database_url: str
    redis_url: str | None
    token: str = "test-token"
    config: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    processes: list[GatewayProcess] = field(default_factory=list)
    stop_seconds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        config = {"gateway": {"auth": {"mode": "token", "token": self.token}}, **self.config}
        (self.state_dir / "openclaw.json").write_text(json.dumps(config))

    def process_env(self) -> dict[str, str]:
        env = {**os.environ, "DATABASE_URL": self.database_url, "OPENCLAW_STATE_DIR": str(self.state_dir),
               "OPENCLAW_CONFIG_PATH": str(self.state_dir / "openclaw.json"), "DJANGO_SECRET_KEY": "test-secret",
               "PYTHONUNBUFFERED": "1", **self.env}  # fmt: skip
        env.pop("OPENCLAW_TEST_DB_NAME", None)
        env.pop("REDIS_URL", None)
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        return env

    def start(self, roles: str, *, wait: bool = True) -> GatewayProcess:
        port = free_port() if "web" in roles.split(",") or roles == "all" else None
        log_path = self.state_dir / f"{roles.replace(',', '+')}-{len(self.processes)}.log"
        command = [sys.executable, str(ROOT / "manage.py"), "gateway", "--role", roles]
        if port is not None:
            command += ["--host", "127.0.0.1", "--port", str(port)]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=self.process_env(), stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        started = GatewayProcess(roles=roles, process=process, log_path=log_path, port=port, token=self.token)
        self.processes.append(started)
        return started.wait_ready() if wait else started

    def start_many(self, *roles: str) -> list[GatewayProcess]:
        """Start several processes at once, then wait for each."""
        started = [self.start(role, wait=False) for role in roles]
        return [process.wait_ready() for process in started]

    def manage(self, *args: str, timeout: float = 120) -> str:
        """Run a management command against the cluster's database."""
        done = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, env=self.process_env(),
                              capture_output=True, text=True, timeout=timeout)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def stop(self) -> None:
        """SIGTERM every process at once, then wait for each (SIGKILL after 10 s)."""
        for process in self.processes:
            if process.alive():
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            started = time.monotonic()
            process.stop()
            self.stop_seconds[process.roles] = max(self.stop_seconds.get(process.roles, 0), time.monotonic() - started)


# --- private PostgreSQL and Redis ----------------------------------------------------------


def postgres_bin() -> Path | None:
    """The directory of ``initdb``/``pg_ctl`` (Debian's versioned dirs, else the PATH)."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def private_services_available() -> bool:
    return postgres_bin() is not None and shutil.which("redis-server") is not None


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free loopback port (trust auth)."""

    def __init__(self, base: Path) -> None:
        self.bin = postgres_bin()
        self.base = base
        self.data = base / "pgdata"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        base.mkdir(parents=True, exist_ok=True)
        if self.user:
            uid = pwd.getpwnam(self.user).pw_uid
            os.chown(base, uid, -1)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")

    def _run(self, tool: str, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / tool), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}")
        return done

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=400")  # fmt: skip
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.base / "postgres.log"), "-w", "start")

    def kill(self) -> None:
        """Stop at once (``-m immediate``: no clean shutdown; clients see dropped connections)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.base, ignore_errors=True)


class PrivateRedis:
    """A throw-away Redis server (no persistence) on a free loopback port."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        base.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.base)],
            stdout=open(self.base / "redis.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        wait_until(self._pong, timeout=10, what="redis ready")

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)

    def close(self) -> None:
        self.kill()

"""Run the gateway: daphne (HTTP + WebSocket), the run engine, the django-q2 cluster and the ticker.

``--role all`` (default) runs the three together: the engine as a task on daphne's
asyncio loop (the in-memory channel layer only reaches within one process) and the
django-q2 cluster as a child process. ``--role web|engine|worker`` (or a comma list such
as ``web,engine``) runs a part, for scale-out. Ctrl-C/SIGTERM stops everything within a
few seconds: running turns go back to the queue, a hanging cluster is killed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

logger = logging.getLogger(__name__)
ROLES = ("web", "engine", "worker")
WORKER_STOP_S = 3.0
ENGINE_STOP_S = 3.0


def parse_roles(value: str) -> set[str]:
    roles = {part.strip().lower() for part in value.split(",") if part.strip()}
    if "all" in roles:
        return set(ROLES)
    unknown = roles - set(ROLES)
    if unknown or not roles:
        raise CommandError(f"unknown --role {value!r}: use all, web, engine, worker or a comma list of them")
    return roles


class Command(BaseCommand):
    help = "Start the gateway (HTTP + WebSocket on one port, the run engine, the django-q2 cluster)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=18789)
        parser.add_argument("--role", default="all", help="all (default), web, engine, worker, or e.g. web,engine")
        parser.add_argument(
            "--allow-unauthenticated", action="store_true",
            help="listen on a non-loopback --host although gateway.auth.mode is none (warns)",
        )  # fmt: skip

    def handle(self, *args, host: str, port: int, role: str, allow_unauthenticated: bool = False, **options):
        roles = parse_roles(role)
        if "web" in roles:
            self._check_bind(host, allow_unauthenticated)
        worker = start_worker() if "worker" in roles else None
        ticker = start_ticker() if "worker" in roles else None
        try:
            if "web" in roles:
                self._serve(host, port, engine="engine" in roles)
            elif "engine" in roles:
                self.stdout.write("run engine started (no web server)")
                from sessions_app.engine import run_engine_forever

                run_engine_forever()
            else:
                wait_for_signal(worker)
        finally:
            if ticker is not None:
                ticker[1].set()
                ticker[0].join(timeout=3)
            if worker is not None:
                stop_worker(worker)

    def _check_bind(self, host: str, allow_unauthenticated: bool) -> None:
        """Refuse a wider-than-loopback bind without auth unless told; then warn loudly."""
        from openclaw_site.config import get_config

        if is_loopback(host) or get_config().auth.mode != "none":
            return
        message = (
            f"gateway.auth.mode is none and --host {host} is not loopback: anyone who can reach "
            "this port can run agents and read every session"
        )
        if not allow_unauthenticated:
            raise CommandError(f"refusing to start: {message}. Set gateway.auth (token or password) "
                               "or pass --allow-unauthenticated.")  # fmt: skip
        logger.warning("UNAUTHENTICATED GATEWAY: %s", message)
        self.stderr.write(f"WARNING: UNAUTHENTICATED GATEWAY: {message}")

    def _serve(self, host: str, port: int, *, engine: bool) -> None:
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server  # installs the asyncio reactor

        from openclaw_site.asgi import application

        if engine:
            attach_engine()
        self.stdout.write(f"gateway listening on http://{host}:{port}/ (WebSocket ws://{host}:{port}/ws)")
        Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            websocket_timeout=-1,
            websocket_connect_timeout=20,
            # daphne's default 1 MiB cap would drop frames the protocol allows (maxPayload);
            # the consumer closes anything over maxPayload with 1009 itself.
            websocket_max_message_size=settings.OPENCLAW_MAX_BUFFERED_BYTES,
            websocket_max_frame_size=settings.OPENCLAW_MAX_BUFFERED_BYTES,
            signal_handlers=True,
        ).run()


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    import ipaddress

    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def attach_engine() -> None:
    """Run the engine on the reactor's asyncio loop; stop it (bounded) before shutdown."""
    from twisted.internet import defer, reactor

    from sessions_app.engine import Engine

    engine = Engine()

    def start() -> None:
        asyncio.get_event_loop().create_task(engine.run())

    def stop():
        future = asyncio.ensure_future(asyncio.wait_for(engine.stop(timeout=ENGINE_STOP_S), ENGINE_STOP_S + 1))
        return defer.Deferred.fromFuture(future).addErrback(lambda failure: None)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", stop)


def start_worker() -> subprocess.Popen:
    """The django-q2 cluster (``manage.py qcluster``) as a child in its own process group."""
    manage = Path(settings.BASE_DIR) / "manage.py"
    return subprocess.Popen([sys.executable, str(manage), "qcluster"], start_new_session=True)


def start_ticker():
    """Declare the django-q2 schedules (the durable minute tick) and start the in-process
    ticker (heartbeats, cron slots and parked wakes at second resolution)."""
    from cron_app.scheduler import schedules_ensure, start_ticker_thread

    try:
        schedules_ensure()
    except Exception:  # the ticker still runs; the schedules are re-declared on migrate
        logger.exception("could not declare the django-q2 schedules")
    return start_ticker_thread()


def stop_worker(process: subprocess.Popen) -> None:
    """SIGTERM the cluster; SIGKILL its group if it is still there after a few seconds."""
    if process.poll() is not None:
        return
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=WORKER_STOP_S)
    except subprocess.TimeoutExpired:
        logger.warning("django-q2 cluster did not stop in %ss; killing it", WORKER_STOP_S)
        _signal_group(process, signal.SIGKILL)
        process.wait(timeout=5)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass


def wait_for_signal(worker: subprocess.Popen | None) -> None:
    """Block until SIGINT/SIGTERM (or the worker exits)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        if worker is not None and worker.poll() is not None:
            return

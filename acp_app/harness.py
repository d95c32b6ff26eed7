"""One harness OS process: its own process group, stderr drained, stopped by the group.

An npm wrapper (``npx some-agent``) can leave its native child behind when only the
wrapper is signalled, so every harness starts a new session (``start_new_session``) and
is stopped with ``os.killpg``: TERM, then KILL after a bound. Its stderr is read all the
time (the last few KiB are kept for error messages), so a chatty agent can never block
on a full pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass, field

from acp.transports import default_environment

logger = logging.getLogger(__name__)

STDOUT_LIMIT_BYTES = 50 * 1024 * 1024  # one JSON-RPC line may carry a large file
STDERR_TAIL_BYTES = 8 * 1024
_PASSED_THROUGH_ENV = ("LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ")


@dataclass(frozen=True)
class HarnessSpec:
    """The command line of a harness (``acp.agents.<id>``)."""

    command: str
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None


def harness_environment(extra: dict[str, str]) -> dict[str, str]:
    """A trimmed environment (the SDK's: HOME, PATH, USER, …, plus locale) with ``extra``
    on top, so the gateway's own secrets never reach a harness."""
    env = default_environment()
    env.update({name: os.environ[name] for name in _PASSED_THROUGH_ENV if name in os.environ})
    env.update(extra)
    return env


class HarnessProcess:
    """A started harness. Build it with :meth:`start`; stop it with :meth:`stop`."""

    def __init__(self, process: asyncio.subprocess.Process, *, name: str) -> None:
        self.process = process
        self.name = name
        self.pid = process.pid
        self._tail = bytearray()
        self._stderr_task = asyncio.create_task(self._drain_stderr(), name=f"acp-stderr-{name}")
        self._exit_task = asyncio.create_task(process.wait(), name=f"acp-exit-{name}")

    @classmethod
    async def start(cls, spec: HarnessSpec, *, cwd: str, name: str) -> HarnessProcess:
        """Spawn ``spec`` in ``spec.cwd or cwd`` as the leader of a new process group."""
        process = await asyncio.create_subprocess_exec(
            spec.command,
            *spec.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=harness_environment(spec.env),
            cwd=spec.cwd or cwd,
            start_new_session=True,
            limit=STDOUT_LIMIT_BYTES,
        )
        logger.info("acp harness %s started: pid %s (%s)", name, process.pid, spec.command)
        return cls(process, name=name)

    @property
    def streams(self) -> tuple[asyncio.StreamWriter, asyncio.StreamReader]:
        """``(stdin, stdout)``: what the ACP connection writes to and reads from."""
        assert self.process.stdin is not None and self.process.stdout is not None
        return self.process.stdin, self.process.stdout

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has exited, else None."""
        return self.process.returncode

    def has_exited(self) -> bool:
        """True when the process is gone, even before asyncio has reaped it (a zombie)."""
        return self.process.returncode is not None or _is_zombie_or_gone(self.pid)

    async def wait_exit(self) -> int | None:
        """Wait for the process to exit; its return code."""
        return await asyncio.shield(self._exit_task)

    @property
    def exit_task(self) -> asyncio.Task:
        """A task that completes when the process exits (for racing against requests)."""
        return self._exit_task

    def stderr_tail(self) -> str:
        """The last few KiB the harness wrote to stderr."""
        return self._tail.decode("utf-8", errors="replace")

    async def stop(self, *, term_grace: float = 3.0, kill_grace: float = 2.0) -> int | None:
        """Stop the whole process group: TERM, KILL after ``term_grace`` seconds, and a final
        KILL for members that outlived the leader. Returns the leader's exit status."""
        with contextlib.suppress(Exception):
            self.process.stdin and self.process.stdin.close()
        self._signal_group(signal.SIGTERM)
        if not await self._wait(term_grace):
            self._signal_group(signal.SIGKILL)
            await self._wait(kill_grace)
        self._signal_group(signal.SIGKILL)
        await self._finish_stderr()
        return self.process.returncode

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    async def _wait(self, timeout: float) -> bool:
        done, _ = await asyncio.wait({self._exit_task}, timeout=timeout)
        return bool(done)

    async def _finish_stderr(self) -> None:
        done, _ = await asyncio.wait({self._stderr_task}, timeout=1.0)
        if not done:
            self._stderr_task.cancel()

    async def _drain_stderr(self) -> None:
        stream = self.process.stderr
        if stream is None:
            return
        with contextlib.suppress(Exception):
            while chunk := await stream.read(65536):
                self._tail.extend(chunk)
                del self._tail[:-STDERR_TAIL_BYTES]
                if logger.isEnabledFor(logging.DEBUG):
                    logger.debug("acp harness %s stderr: %s", self.name, chunk[:500].decode(errors="replace"))


def _is_zombie_or_gone(pid: int) -> bool:
    """True when ``/proc`` shows the pid as a zombie or not at all (False where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except FileNotFoundError:
        return os.path.isdir("/proc/self")
    except OSError:
        return False
    state = stat.rsplit(b")", 1)[-1].split()[:1]
    return state in ([b"Z"], [b"X"])

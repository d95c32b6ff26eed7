"""The ACP runtime: harness processes of ACP-backed sessions, one :class:`AcpHandle` each.

``ensure`` returns the live handle of a session or starts one: it spawns the harness of
``acp.agents.<harness_id>`` (the built-in ``offline`` agent when that id is not
configured), ``initialize``s it and resumes the stored upstream session with
``session/load`` (an error → a fresh ``session/new``). A persistent handle stays alive
between prompts; one idle longer than ``acp.runtime.ttlMinutes`` is closed by
:meth:`AcpRuntime.reap_idle` and is never handed out again: the next ``ensure`` starts a
fresh process and loads the upstream session (the P0 of OpenClaw PR #91093). So does a
handle whose process died. The runtime lives on one event loop (the engine's); use it
from that loop only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from openclaw_site.config import get_config

from acp_app.errors import (
    AcpAgentForbiddenError,
    AcpAgentNotConfiguredError,
    AcpCapacityError,
    AcpCwdError,
    AcpDisabledError,
    AcpHandleClosedError,
    AcpHarnessCrashedError,
    AcpSpawnError,
    AcpTurnFailedError,
    AcpTurnTimeoutError,
)
from acp_app.handle import AcpHandle
from acp_app.harness import HarnessProcess, HarnessSpec
from acp_app.permissions import DEFAULT_POLICY, POLICIES
from acp_app.updates import AcpUpdate, OnUpdate, PromptResult

__all__ = [
    "OFFLINE_HARNESS_ID",
    "AcpAgentForbiddenError",
    "AcpAgentNotConfiguredError",
    "AcpCapacityError",
    "AcpCwdError",
    "AcpDisabledError",
    "AcpHandle",
    "AcpHandleClosedError",
    "AcpHarnessCrashedError",
    "AcpRuntime",
    "AcpSpawnError",
    "AcpTurnFailedError",
    "AcpTurnTimeoutError",
    "AcpUpdate",
    "OnUpdate",
    "PromptResult",
    "default_runtime",
    "harness_spec",
]

logger = logging.getLogger(__name__)

OFFLINE_HARNESS_ID = "offline"


# --- config ------------------------------------------------------------------


def _acp_config() -> dict:
    return get_config().acp or {}


_OFFLINE_PASSED_ENV = (
    "OFFLINE_ACP_REPLY", "OPENCLAW_OFFLINE_RULES", "OPENCLAW_STATE_DIR", "OPENCLAW_CONFIG_PATH",
    "DJANGO_SETTINGS_MODULE",
)  # fmt: skip


def offline_agent_spec() -> HarnessSpec:
    """The bundled offline agent (``python -m acp_app.offline_agent``) with the project on
    its path, its state under ``OFFLINE_ACP_STATE_DIR`` (default
    ``<OPENCLAW_STATE_DIR>/offline-acp``) and the gateway's settings for its
    ``OFFLINE_ACP_REPLY=provider`` mode."""
    from django.conf import settings

    state_dir = os.environ.get("OFFLINE_ACP_STATE_DIR") or str(settings.OPENCLAW_STATE_DIR / "offline-acp")
    env = {name: os.environ[name] for name in _OFFLINE_PASSED_ENV if name in os.environ}
    env.update(PYTHONPATH=str(settings.BASE_DIR), OFFLINE_ACP_STATE_DIR=state_dir)
    return HarnessSpec(command=sys.executable, args=("-m", "acp_app.offline_agent"), env=env)


def harness_spec(harness_id: str) -> HarnessSpec:
    """The command line of a harness, after the policy checks: ``acp.enabled`` and a
    non-empty ``acp.allowedAgents``. Raises AcpDisabledError, AcpAgentForbiddenError or
    AcpAgentNotConfiguredError."""
    acp = _acp_config()
    if acp.get("enabled") is False:
        raise AcpDisabledError()
    allowed = acp.get("allowedAgents") or []
    if allowed and harness_id not in allowed:
        raise AcpAgentForbiddenError(harness_id)
    entry = (acp.get("agents") or {}).get(harness_id)
    if entry:
        args = tuple(entry.get("args") or ())
        return HarnessSpec(entry["command"], args, dict(entry.get("env") or {}), entry.get("cwd") or None)
    if harness_id == OFFLINE_HARNESS_ID:
        return offline_agent_spec()
    raise AcpAgentNotConfiguredError(harness_id)


def _check_cwd(cwd: str) -> str:
    if not cwd or not os.path.isabs(cwd) or not os.path.isdir(cwd):
        raise AcpCwdError(cwd)
    return os.path.normpath(cwd)


def _policy(override: str | None) -> str:
    policy = override or _acp_config().get("permissionPolicy") or DEFAULT_POLICY
    return policy if policy in POLICIES else DEFAULT_POLICY


# --- the runtime -------------------------------------------------------------


class AcpRuntime:
    """Owns the harness processes of the sessions one engine serves.

    ``idle_ttl`` (seconds) overrides ``acp.runtime.ttlMinutes`` (0 or less: never idle out);
    ``max_handles`` overrides ``acp.maxConcurrentSessions``. The other bounds: harness
    startup (``initialize`` + ``session/new|load``), the default prompt timeout, how long a
    cancelled turn may take to stop, and the TERM → KILL grace.
    """

    def __init__(
        self,
        *,
        idle_ttl: float | None = None,
        max_handles: int | None = None,
        startup_timeout: float = 30.0,
        prompt_timeout: float = 600.0,
        cancel_grace: float = 5.0,
        term_grace: float = 3.0,
    ) -> None:
        self._idle_ttl = idle_ttl
        self._max_handles = max_handles
        self.startup_timeout = startup_timeout
        self.prompt_timeout = prompt_timeout
        self.cancel_grace = cancel_grace
        self.term_grace = term_grace
        self._handles: dict[str, AcpHandle] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @property
    def idle_ttl(self) -> float | None:
        """Seconds after which an idle handle is closed; None when handles never idle out."""
        ttl = self._idle_ttl
        if ttl is None:
            ttl = float((_acp_config().get("runtime") or {}).get("ttlMinutes", 10)) * 60
        return ttl if ttl > 0 else None

    @property
    def max_handles(self) -> int:
        return self._max_handles or int(_acp_config().get("maxConcurrentSessions") or 8)

    def get(self, acp_session_key: str) -> AcpHandle | None:
        """The open handle of a session, if any (it may have died; ``ensure`` checks)."""
        return self._handles.get(acp_session_key)

    def handles(self) -> list[AcpHandle]:
        """Every open handle."""
        return list(self._handles.values())

    async def ensure(
        self,
        *,
        acp_session_key: str,
        harness_id: str,
        cwd: str,
        upstream_session_id: str | None = None,
        permission_policy: str | None = None,
    ) -> AcpHandle:
        """The live handle of ``acp_session_key``, or a new one resuming
        ``upstream_session_id`` (else the id of the handle it replaces).

        A handle is reused only while its process runs, it has not idled past the TTL, and
        its harness, cwd and upstream session match; otherwise it is closed and replaced.
        Raises the policy errors of :func:`harness_spec`, AcpCwdError, AcpCapacityError or
        AcpSpawnError.
        """
        harness_id = harness_id.strip().lower()
        spec = harness_spec(harness_id)
        cwd = _check_cwd(cwd)
        async with self._lock(acp_session_key):
            current = self._handles.get(acp_session_key)
            if current is not None and self._reusable(current, harness_id, cwd, upstream_session_id):
                return current
            if current is not None:
                upstream_session_id = upstream_session_id or current.upstream_session_id or None
                await self._drop(current, reason="replaced" if current.alive else "exited")
            await self._make_room()
            handle = await self._open(spec, acp_session_key, harness_id, cwd, upstream_session_id, permission_policy)
            self._handles[acp_session_key] = handle
            return handle

    async def prompt(
        self, handle: AcpHandle, text: str, on_update: OnUpdate | None = None, *, timeout: float | None = None
    ) -> PromptResult:
        """``handle.prompt`` with the runtime's default timeout."""
        return await handle.prompt(text, on_update, timeout=timeout or self.prompt_timeout)

    async def close(self, handle: AcpHandle | str, *, reason: str = "closed") -> bool:
        """Close a handle (or the handle of a session key) and stop its process group.
        True when something was open."""
        key = handle if isinstance(handle, str) else handle.acp_session_key
        target = self._handles.get(key) if isinstance(handle, str) else handle
        if target is None:
            return False
        was_open = not target.closed
        await self._drop(target, reason=reason)
        return was_open

    async def close_all(self, *, reason: str = "shutdown") -> None:
        """Close every handle (engine shutdown)."""
        await asyncio.gather(*(self._drop(h, reason=reason) for h in self.handles()), return_exceptions=True)

    async def reap_idle(self) -> list[str]:
        """Close handles idle past the TTL and handles whose process died; their keys."""
        ttl = self.idle_ttl
        expired = [
            h for h in self.handles() if not h.alive or (ttl is not None and not h.busy and h.idle_seconds() >= ttl)
        ]
        for handle in expired:
            await self._drop(handle, reason="idle-ttl" if handle.alive else "exited")
        return [h.acp_session_key for h in expired]

    async def run_reaper(self, *, interval: float = 30.0) -> None:
        """Call :meth:`reap_idle` every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reap_idle()
            except Exception:
                logger.exception("acp reaper failed")

    # --- internals ---------------------------------------------------------

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def _reusable(self, handle: AcpHandle, harness_id: str, cwd: str, upstream: str | None) -> bool:
        ttl = self.idle_ttl
        return (
            handle.alive
            and handle.harness_id == harness_id
            and handle.cwd == cwd
            and (not upstream or upstream == handle.upstream_session_id)
            and (ttl is None or handle.busy or handle.idle_seconds() < ttl)
        )

    async def _open(
        self, spec: HarnessSpec, key: str, harness_id: str, cwd: str, upstream: str | None, policy: str | None
    ) -> AcpHandle:
        try:
            process = await HarnessProcess.start(spec, cwd=cwd, name=f"{harness_id}:{key}")
        except OSError as exc:
            raise AcpSpawnError(harness_id, str(exc)) from exc
        handle = AcpHandle(
            acp_session_key=key,
            harness_id=harness_id,
            cwd=cwd,
            process=process,
            permission_policy=_policy(policy),
            cancel_grace=self.cancel_grace,
            term_grace=self.term_grace,
        )
        try:
            await handle.open_session(upstream_session_id=upstream, timeout=self.startup_timeout)
        except BaseException:
            await handle.shutdown()
            raise
        logger.info("acp %s ready for %s (pid %s, resumed=%s)", harness_id, key, handle.pid, handle.resumed)
        return handle

    async def _make_room(self) -> None:
        """Close least-recently-used idle handles until a new one fits."""
        while len(self._handles) >= self.max_handles:
            idle = sorted((h for h in self.handles() if not h.busy), key=lambda h: h.last_used)
            if not idle:
                raise AcpCapacityError(self.max_handles)
            await self._drop(idle[0], reason="capacity")

    async def _drop(self, handle: AcpHandle, *, reason: str) -> None:
        if self._handles.get(handle.acp_session_key) is handle:
            del self._handles[handle.acp_session_key]
        logger.info("acp closing %s (%s)", handle, reason)
        await handle.shutdown()


_default: AcpRuntime | None = None


def default_runtime() -> AcpRuntime:
    """The process-wide runtime (create it on, and use it from, the engine's event loop)."""
    global _default
    if _default is None:
        _default = AcpRuntime()
    return _default

"""The engine's ACP turn: one run of an ACP-backed session, prompted into its harness.

:func:`run_acp_turn` is what the run engine calls instead of the model loop for a
session that has an :class:`~acp_app.models.AcpSession`. It takes the input the turn
recorded (the user message, drained deliveries and system events of this run), ensures
the session's harness on :func:`acp_app.runtime.default_runtime` (a persistent worker
keeps its process; a new or evicted one resumes the stored upstream session with
``session/load``), prompts it and maps the updates onto gateway events (text deltas,
tool events) and transcript entries (the reply, one entry per tool call). The harness
identity (upstream session id, pid) and the worker state are stored after every step.

- A harness crash ends the run with the crash error; the row goes to ``error`` and the
  next turn re-ensures a fresh process that loads the upstream session.
- An abort or the run's timeout cancels the coroutine; the runtime answers that with
  ``session/cancel`` (and kills a harness that ignores it).
- A closed worker raises :class:`~acp_app.exceptions.AcpSessionClosedError` and is never
  reopened. ``oneshot`` sessions (``mode: "run"``) close their harness after the turn.

The runtime lives on the engine's loop; :func:`runtime_close` lets sync code in other
threads (RPC handlers, admin, the sweep) close a handle on that loop. A watcher task
started with the first turn reaps idle handles (``acp.runtime.ttlMinutes``) and closes
handles of sessions that were closed elsewhere (another process's sweep).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from asgiref.sync import sync_to_async

from openclaw_site.errors import GatewayError

from . import services
from .models import AcpSession
from .runtime import AcpHarnessCrashedError, AcpUpdate, default_runtime

logger = logging.getLogger(__name__)
db = sync_to_async
DELTA_INTERVAL_S = 0.1
WATCH_INTERVAL_S = 15.0
CLOSE_TIMEOUT_S = 15.0
TIMEOUT_GRACE_S = 5.0

OnText = Callable[[str], Awaitable[None]]
OnTool = Callable[[dict[str, Any]], Awaitable[None]]

_loop: asyncio.AbstractEventLoop | None = None
_watcher: asyncio.Task | None = None


@dataclass
class AcpTurnResult:
    """What the turn produced: the reply, why it stopped, usage and the tool calls."""

    text: str
    stop_reason: str
    usage: dict[str, int] = field(default_factory=lambda: {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0})
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    resumed: bool = False


# --- the turn ------------------------------------------------------------------------------


async def run_acp_turn(
    *, run, session, on_text_delta: OnText, on_tool_event: OnTool, timeout: float | None = None,
    engine_owner: str = "",
) -> AcpTurnResult:
    """Prompt the session's harness with this run's input; see the module docstring.

    Raises the runtime's errors (``GatewayError`` subclasses) and
    :class:`AcpSessionClosedError`; cancellation propagates after ``session/cancel``.
    """
    _remember_loop()
    acp = await db(services.acp_turn_prepare)(session_pk=session.pk)
    prompt = await db(prompt_text)(session=session, run=run)
    if not prompt:
        return AcpTurnResult(text="", stop_reason="no_input")
    runtime = default_runtime()
    handle = await _ensure(runtime, acp)
    await db(services.acp_runtime_attached)(acp_pk=acp.pk, upstream_session_id=handle.upstream_session_id,
                                            pid=handle.pid, engine_owner=engine_owner)  # fmt: skip
    stream = _Stream(on_text_delta, on_tool_event)
    try:
        bound = timeout + TIMEOUT_GRACE_S if timeout else None  # the run's own timeout fires first
        result = await runtime.prompt(handle, prompt, stream.on_update, timeout=bound)
    except asyncio.CancelledError:  # abort or the run's timeout; the runtime sent session/cancel
        await asyncio.shield(_settle(acp, error=None))
        raise
    except AcpHarnessCrashedError as error:
        await _settle(acp, error=error.message, process_gone=True)
        raise
    except GatewayError as error:
        await _settle(acp, error=error.message)
        raise
    await stream.flush(result.text)
    await db(record_reply)(session=session, run=run, result=result, harness=acp.harness_agent)
    await _settle(acp, error=None)
    if acp.mode == AcpSession.Mode.ONESHOT:
        await runtime.close(handle, reason="oneshot-done")
    return AcpTurnResult(text=result.text, stop_reason=result.stop_reason, usage=_usage(result.usage),
                         tool_calls=result.tool_calls, resumed=handle.resumed)  # fmt: skip


async def _ensure(runtime, acp: AcpSession):
    try:
        return await runtime.ensure(acp_session_key=acp.session.key, harness_id=acp.harness_agent, cwd=acp.cwd,
                                    upstream_session_id=acp.upstream_session_id or None)  # fmt: skip
    except GatewayError as error:
        await _settle(acp, error=error.message, process_gone=True)
        raise


async def _settle(acp: AcpSession, *, error: str | None, process_gone: bool = False) -> None:
    await db(services.acp_turn_ended)(acp_pk=acp.pk, error=error, process_gone=process_gone)


def _usage(usage: dict[str, Any] | None) -> dict[str, int]:
    usage = usage or {}
    used = int(usage.get("used") or 0)
    return {"inputTokens": int(usage.get("inputTokens") or 0), "outputTokens": int(usage.get("outputTokens") or 0),
            "totalTokens": int(usage.get("totalTokens") or used)}  # fmt: skip


class _Stream:
    """Turns ``session/update`` notifications into throttled text deltas and tool events."""

    def __init__(self, on_text: OnText, on_tool: OnTool) -> None:
        self._on_text, self._on_tool = on_text, on_tool
        self._text, self._published, self._last = "", 0, 0.0
        self._started: set[str] = set()

    async def on_update(self, update: AcpUpdate) -> None:
        if update.kind == "agent_message_chunk":
            self._text += update.data.get("text") or ""
            if time.monotonic() - self._last >= DELTA_INTERVAL_S:
                await self._publish()
        elif update.kind in ("tool_call", "tool_call_update"):
            await self._on_tool(self._tool_event(update.data))
        elif update.kind == "plan":
            await self._on_tool({"phase": "plan", "name": "plan", "entries": update.data.get("entries") or []})

    def _tool_event(self, call: dict[str, Any]) -> dict[str, Any]:
        call_id = call.get("toolCallId") or ""
        status = call.get("status")
        if call_id not in self._started:
            phase = "start"
            self._started.add(call_id)
        else:
            phase = "result" if status in ("completed", "failed") else "update"
        return {"phase": phase, "name": call.get("title") or call.get("kind") or "tool", "toolCallId": call_id,
                "args": call.get("rawInput"), "result": call.get("rawOutput"), "status": status,
                "isError": status == "failed", "acp": call}  # fmt: skip

    async def _publish(self) -> None:
        if len(self._text) > self._published:
            await self._on_text(self._text)
            self._published, self._last = len(self._text), time.monotonic()

    async def flush(self, final_text: str) -> None:
        self._text = final_text or self._text
        await self._publish()


# --- transcript (sync) ------------------------------------------------------------------------


def prompt_text(*, session, run) -> str:
    """What the harness is told this turn: the user-side entries the run recorded (its
    message, drained deliveries and ``System:`` lines), in order."""
    from sessions_app.models import TranscriptEntry

    entries = TranscriptEntry.objects.filter(
        session_id=session.pk, run_id=run.run_id, role__in=(TranscriptEntry.Role.USER, TranscriptEntry.Role.SYSTEM),
        archived=False,
    ).order_by("seq")  # fmt: skip
    return "\n\n".join(entry.text for entry in entries if entry.text.strip())


def record_reply(*, session, run, result, harness: str) -> None:
    """One ``tool`` entry per harness tool call, then the assistant reply."""
    from sessions_app.services.sessions import transcript_append

    for call in result.tool_calls:
        block = {"type": "toolResult", "toolCallId": call.get("toolCallId"), "toolName": call.get("title") or "tool",
                 "isError": call.get("status") == "failed", "text": str(call.get("rawOutput") or call.get("status") or ""),
                 "acp": call}  # fmt: skip
        transcript_append(session=session, role="tool", content=[block], run_id=run.run_id,
                          provenance={"kind": "acp_tool", "toolCallId": call.get("toolCallId")})  # fmt: skip
    if result.text:
        transcript_append(session=session, role="assistant", content=result.text, run_id=run.run_id,
                          usage=_usage(result.usage), stop_reason=result.stop_reason, provider="acp", model=harness)  # fmt: skip


# --- the runtime's loop, seen from other threads ----------------------------------------------


def _remember_loop() -> None:
    global _loop, _watcher
    loop = asyncio.get_running_loop()
    if _loop is not loop:
        _loop = loop
        _watcher = None
    if _watcher is None or _watcher.done():
        _watcher = loop.create_task(watch_runtime(), name="acp-runtime-watch")


def runtime_close(*, session_key: str, reason: str) -> str | None:
    """Close the harness of ``session_key`` on the runtime's loop, from a sync thread.

    Returns a notice (``runtime closed`` / ``no live runtime``); raises what the close
    raised, or TimeoutError. Runtimes in other processes notice the closed row within
    :data:`WATCH_INTERVAL_S` and close their handle then."""
    loop = _loop
    if loop is None or loop.is_closed() or not loop.is_running():
        return "no live runtime in this process"
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        raise RuntimeError("runtime_close must be called from a thread, not the runtime's loop")
    future = asyncio.run_coroutine_threadsafe(default_runtime().close(session_key, reason=reason), loop)
    try:
        closed = future.result(timeout=CLOSE_TIMEOUT_S)
    except concurrent.futures.TimeoutError as error:
        future.cancel()
        raise TimeoutError(f"the harness did not stop within {CLOSE_TIMEOUT_S:g}s") from error
    return "runtime closed" if closed else "no live runtime"


async def watch_runtime(*, interval: float = WATCH_INTERVAL_S) -> None:
    """Every ``interval``: reap idle/dead handles and close those of closed sessions."""
    while True:
        await asyncio.sleep(interval)
        try:
            await sweep_runtime()
        except Exception:
            logger.exception("acp runtime watch failed")


async def sweep_runtime() -> list[str]:
    """One watch step; returns the keys whose handles were closed."""
    runtime = default_runtime()
    reaped = await runtime.reap_idle()
    keys = [h.acp_session_key for h in runtime.handles()]
    closed = await db(_closed_keys)(keys) if keys else []
    for key in closed:
        await runtime.close(key, reason="session-closed")
    if reaped or closed:
        await db(services.acp_runtime_released)(session_keys=[*reaped, *closed])
    return [*reaped, *closed]


def _closed_keys(keys: list[str]) -> list[str]:
    live = set(
        AcpSession.objects.filter(session__key__in=keys).exclude(state=AcpSession.State.CLOSED)
        .values_list("session__key", flat=True)
    )  # fmt: skip
    return [key for key in keys if key not in live]


@atexit.register
def _kill_harnesses_at_exit() -> None:
    """Harnesses lead their own process groups, so they outlive a gateway that exits
    without closing them; kill the groups still open."""
    runtime = default_runtime() if _loop is not None else None
    for handle in runtime.handles() if runtime else []:
        try:
            os.killpg(handle.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

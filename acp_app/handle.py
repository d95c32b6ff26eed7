"""One live ACP session on one harness process (build it with :class:`acp_app.runtime.AcpRuntime`).

Every wait is bounded and raced against the harness's exit, so a harness that dies
mid-request ends the request promptly with :class:`AcpHarnessCrashedError` instead of
hanging until a long timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from acp import PROTOCOL_VERSION, RequestError, connect_to_agent, text_block
from acp.schema import ClientCapabilities, Implementation, PermissionOption, ToolCallUpdate

from acp_app.errors import (
    AcpHandleClosedError,
    AcpHarnessCrashedError,
    AcpSpawnError,
    AcpTurnFailedError,
    AcpTurnTimeoutError,
)
from acp_app.harness import HarnessProcess
from acp_app.permissions import decide_permission
from acp_app.updates import OnUpdate, PromptResult, TurnCollector

logger = logging.getLogger(__name__)

CLIENT_INFO = Implementation(name="openclaw-gateway", title="OpenClaw gateway (Django)", version="0.1.0")


class _HarnessClient:
    """The gateway's (client) side of ACP for one handle: routes ``session/update`` to the
    running turn and answers ``session/request_permission`` by the handle's policy.
    Updates outside a turn (the history replayed by ``session/load``) are dropped."""

    def __init__(self, handle: AcpHandle) -> None:
        self._handle = handle

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        turn = self._handle._turn
        if turn is not None:
            await turn.apply(update)

    async def request_permission(
        self, session_id: str, tool_call: ToolCallUpdate, options: list[PermissionOption], **kwargs: Any
    ):
        turn = self._handle._turn
        kind = tool_call.kind or (turn.tool_kind(tool_call.tool_call_id) if turn else None)
        response, decision = decide_permission(policy=self._handle.permission_policy, tool_kind=kind, options=options)
        if turn is not None:
            await turn.permission(tool_call.tool_call_id, decision)
        return response


class AcpHandle:
    """A harness process holding one upstream ACP session for one gateway session.

    Public state: ``acp_session_key``, ``harness_id``, ``cwd``, ``permission_policy``,
    ``upstream_session_id`` (the harness's session id; store it to resume later),
    ``resumed`` (True when ``session/load`` of a stored id succeeded), ``load_error``
    (why a resume fell back to ``session/new``), ``agent_info``, ``pid``, ``returncode``,
    ``alive``, ``busy``, ``closed``, ``prompt_count``, ``last_used`` (monotonic seconds).
    """

    def __init__(
        self,
        *,
        acp_session_key: str,
        harness_id: str,
        cwd: str,
        process: HarnessProcess,
        permission_policy: str,
        cancel_grace: float = 5.0,
        term_grace: float = 3.0,
    ) -> None:
        self.acp_session_key = acp_session_key
        self.harness_id = harness_id
        self.cwd = cwd
        self.permission_policy = permission_policy
        self.upstream_session_id = ""
        self.resumed = False
        self.load_error: str | None = None
        self.agent_info: dict[str, Any] | None = None
        self.supports_load = False
        self.prompt_count = 0
        self.last_used = time.monotonic()
        self._process = process
        self._cancel_grace = cancel_grace
        self._term_grace = term_grace
        self._turn: TurnCollector | None = None
        self._prompt_lock = asyncio.Lock()
        self._closed = False
        self._background: set[asyncio.Future] = set()
        stdin, stdout = process.streams
        self._conn = connect_to_agent(_HarnessClient(self), stdin, stdout)

    # --- state -------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def alive(self) -> bool:
        """True while the handle is open and its process runs."""
        return not self._closed and not self._process.has_exited()

    @property
    def busy(self) -> bool:
        """True while a prompt is running (or waiting for the handle)."""
        return self._prompt_lock.locked()

    def idle_seconds(self) -> float:
        """Seconds since the last prompt ended (or the handle opened); 0 while busy."""
        return 0.0 if self.busy else time.monotonic() - self.last_used

    def stderr_tail(self) -> str:
        return self._process.stderr_tail()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "alive" if self.alive else "dead"
        return f"<AcpHandle {self.acp_session_key} {self.harness_id} pid={self.pid} {state}>"

    # --- turns -------------------------------------------------------------

    async def prompt(self, text: str, on_update: OnUpdate | None = None, *, timeout: float = 600.0) -> PromptResult:
        """Run one ``session/prompt`` turn and return its result.

        ``on_update`` (sync or async) gets every :class:`AcpUpdate` of the turn. Raises
        :class:`AcpHarnessCrashedError` when the harness exits mid-turn,
        :class:`AcpTurnFailedError` on a JSON-RPC error, :class:`AcpTurnTimeoutError` after
        ``timeout`` seconds (the turn is cancelled; a harness that ignores the cancel is
        killed), :class:`AcpHandleClosedError` when the handle is (or gets) closed.
        """
        self._check_open()
        deadline = time.monotonic() + timeout
        try:
            await asyncio.wait_for(self._prompt_lock.acquire(), timeout)
        except TimeoutError:
            raise AcpTurnTimeoutError(self.harness_id, timeout) from None
        try:
            self._check_open()
            return await self._run_turn(text, on_update, max(0.0, deadline - time.monotonic()), timeout)
        finally:
            self._turn = None
            self.last_used = time.monotonic()
            self._prompt_lock.release()

    async def cancel(self) -> None:
        """Send ``session/cancel``; the running turn ends with stop reason ``cancelled``."""
        if self._closed or not self.upstream_session_id:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._conn.cancel(session_id=self.upstream_session_id), 2.0)

    async def _run_turn(self, text: str, on_update: OnUpdate | None, remaining: float, timeout: float) -> PromptResult:
        turn = self._turn = TurnCollector(on_update)
        self.prompt_count += 1
        task = asyncio.ensure_future(self._conn.prompt(session_id=self.upstream_session_id, prompt=[text_block(text)]))
        try:
            response = await self._await(task, remaining)
        except TimeoutError:
            await self._abort_turn(task)
            raise AcpTurnTimeoutError(self.harness_id, timeout) from None
        except asyncio.CancelledError:
            _discard(task)
            self._in_background(self.cancel())
            raise
        return turn.result(response.stop_reason)

    def _in_background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _abort_turn(self, task: asyncio.Future) -> None:
        """After a timeout: cancel the turn, and kill a harness that does not stop in time."""
        await self.cancel()
        with contextlib.suppress(Exception):
            await self._await(task, self._cancel_grace)
        if not task.done():
            _discard(task)
            logger.warning("acp harness %s ignored session/cancel; stopping it", self.harness_id)
            await self.shutdown()

    # --- startup -----------------------------------------------------------

    async def open_session(self, *, upstream_session_id: str | None, timeout: float) -> None:
        """``initialize``, then ``session/load`` of ``upstream_session_id`` when given and
        supported (an error → ``session/new``), else ``session/new`` with the cwd."""
        try:
            await self._initialize(timeout)
            if upstream_session_id and await self._try_load(upstream_session_id, timeout):
                return
            response = await self._call(self._conn.new_session(cwd=self.cwd, mcp_servers=[]), timeout)
            self.upstream_session_id = response.session_id
        except TimeoutError:
            raise AcpSpawnError(self.harness_id, f"no answer within {timeout:g}s", stderr=self.stderr_tail()) from None
        except (AcpHarnessCrashedError, AcpTurnFailedError) as exc:
            raise AcpSpawnError(self.harness_id, exc.message, stderr=self.stderr_tail()) from exc

    async def _initialize(self, timeout: float) -> None:
        request = self._conn.initialize(
            protocol_version=PROTOCOL_VERSION, client_capabilities=ClientCapabilities(), client_info=CLIENT_INFO
        )
        response = await self._call(request, timeout)
        capabilities = response.agent_capabilities
        self.supports_load = bool(capabilities and capabilities.load_session)
        if response.agent_info is not None:
            self.agent_info = response.agent_info.model_dump(mode="json", by_alias=True, exclude_none=True)

    async def _try_load(self, upstream_session_id: str, timeout: float) -> bool:
        if not self.supports_load:
            self.load_error = "the agent does not support session/load"
            return False
        request = self._conn.load_session(cwd=self.cwd, session_id=upstream_session_id, mcp_servers=[])
        try:
            await self._call(request, timeout)
        except AcpTurnFailedError as exc:
            self.load_error = exc.message
            logger.info("acp %s: session/load %s failed (%s); new session", self.harness_id, upstream_session_id, exc)
            return False
        self.upstream_session_id = upstream_session_id
        self.resumed = True
        return True

    async def _call(self, coro: Any, timeout: float) -> Any:
        return await self._await(asyncio.ensure_future(coro), timeout)

    # --- waiting -----------------------------------------------------------

    async def _await(self, task: asyncio.Future, timeout: float) -> Any:
        """``task``'s result, raced against the harness exit. Raises TimeoutError (task left
        running), AcpHarnessCrashedError, AcpHandleClosedError or AcpTurnFailedError."""
        exit_task = self._process.exit_task
        done, _ = await asyncio.wait({task, exit_task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            raise TimeoutError
        if task in done:
            return await self._result(task)
        _discard(task)
        raise self._gone_error()

    async def _result(self, task: asyncio.Future) -> Any:
        try:
            return task.result()
        except RequestError as exc:
            raise AcpTurnFailedError(self.harness_id, str(exc), rpc_code=exc.code) from exc
        except ConnectionError as exc:
            await asyncio.wait({self._process.exit_task}, timeout=1.0)  # for the return code
            raise self._gone_error() from exc

    def _gone_error(self) -> Exception:
        if self._closed:
            return AcpHandleClosedError(self.acp_session_key)
        return AcpHarnessCrashedError(self.harness_id, returncode=self.returncode, stderr=self.stderr_tail())

    def _check_open(self) -> None:
        if self._closed:
            raise AcpHandleClosedError(self.acp_session_key)
        if self._process.has_exited():
            raise self._gone_error()

    # --- shutdown ----------------------------------------------------------

    async def shutdown(self) -> int | None:
        """Close the connection and stop the process group (TERM, then KILL). Idempotent."""
        self._closed = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._conn.close(), 2.0)
        return await self._process.stop(term_grace=self._term_grace)


def _discard(task: asyncio.Future) -> None:
    """Cancel a request task nobody will await, and swallow its outcome."""
    task.cancel()
    task.add_done_callback(lambda t: t.cancelled() or t.exception())

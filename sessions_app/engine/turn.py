"""One agent turn, as a coroutine.

``lifecycle start`` → input recorded → model steps (each preceded by the inbox drain,
streamed as throttled ``chat`` deltas, tool calls of a step run concurrently with
every result recorded and published the moment it completes) → a terminal state with
``chat`` final|aborted|error and ``lifecycle end|error``. Bounded by the run's timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from openclaw_site.errors import GatewayError

from ..events import event_batch
from ..models import Run
from ..providers import ModelRequest, ProviderError, Stop, TextDelta, ToolCall, Usage, get_provider, resolve_session_model
from ..services import run_events
from ..tool_policy import tool_policy_for_session
from ..tools import ToolContext, invoke_tool, tools_for
from . import store

if TYPE_CHECKING:
    from .loop import Engine

logger = logging.getLogger(__name__)
db = sync_to_async
DELTA_INTERVAL_S = 0.1


class Turn:
    def __init__(self, engine: Engine, run_pk: int) -> None:
        self.engine = engine
        self.run_pk = run_pk
        self.chat_seq = 0
        self.agent_seq = 0
        self.partial = ""
        self.final_text = ""
        self.stop_reason = "stop"
        self.usage = {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}
        self._deferred: list[tuple[int, str, dict[str, Any]]] = []  # agent events riding on the next write

    # --- the run ---------------------------------------------------------------------

    async def execute(self) -> None:
        self.state, model = await db(_begin)(self.run_pk)
        run = self.state.run
        if self.state.session is None:
            await self._finish(Run.Status.ERROR, error={"code": "NO_SESSION", "message": "a run needs a session"})
            return
        self.tool_policy = tool_policy_for_session(self.state.session)  # once per turn, no query
        if isinstance(model, Exception):  # an unknown model is the run's error, not the engine's
            await self._finish(Run.Status.ERROR, error={"code": "MODEL_UNAVAILABLE", "message": str(model)})
            return
        self.provider_name, self.model = model
        status, error = await self._guarded(run)
        # The end is recorded even if a shutdown cancels the task meanwhile.
        finish = asyncio.ensure_future(self._finish(status, error=error))
        try:
            await asyncio.shield(finish)
        except asyncio.CancelledError:
            await asyncio.wait([finish], timeout=5)
            raise

    async def _guarded(self, run: Run) -> tuple[str, dict | None]:
        timeout = run.timeout_s or _agent_timeout(run.agent_id)
        try:
            async with asyncio.timeout(timeout):
                pending = await self._start()
                if self.state.nothing_new:
                    self.stop_reason = "nothing_new"
                elif self.state.is_acp:
                    await self._acp_steps(timeout)
                else:
                    await self._steps(pending)
            return Run.Status.OK, None
        except TimeoutError:
            self.stop_reason = "timeout"
            return Run.Status.TIMEOUT, {"code": "AGENT_TIMEOUT", "message": f"run timed out after {timeout}s"}
        except asyncio.CancelledError:
            reason = self.engine.cancel_reason(self.run_pk)
            if reason != "abort":
                await self._let_go(reason)
                raise
            self.stop_reason = "aborted"
            return Run.Status.ABORTED, {"code": "ABORTED", "message": "aborted"}
        except ProviderError as exc:
            self.stop_reason = "error"
            return Run.Status.ERROR, {"code": "MODEL_ERROR", "message": str(exc)}
        except GatewayError as exc:  # an ACP harness failure (crash, closed worker, turn error)
            self.stop_reason = "timeout" if exc.code == "AGENT_TIMEOUT" else "error"
            status = Run.Status.TIMEOUT if exc.code == "AGENT_TIMEOUT" else Run.Status.ERROR
            return status, {"code": exc.detail_code, "message": exc.message}
        except Exception as exc:
            logger.exception("run %s failed", run.run_id)
            self.stop_reason = "error"
            return Run.Status.ERROR, {"code": "INTERNAL_ERROR", "message": f"{type(exc).__name__}: {exc}"}

    async def _start(self) -> list[dict[str, Any]]:
        """lifecycle start, sessions.changed start, the input; returns the tool calls an
        earlier attempt left unanswered (a run taken over mid-step)."""
        await self._agent("lifecycle", {"phase": "start", "startedAt": _ms_now()}, defer=True)
        return await self._write(store.start_turn, state=self.state)

    async def _steps(self, pending: list[dict[str, Any]]) -> None:
        await asyncio.gather(*(self._tool(ToolCall(id=c["id"], name=c["name"], arguments=c.get("arguments") or {}))
                               for c in pending))  # fmt: skip
        for step in range(settings_max_steps()):
            model_event = ("lifecycle", {"phase": "model", "provider": self.provider_name, "model": self.model})
            messages = await self._write(store.model_messages, state=self.state, prepare=step > 0, then=model_event)
            text, calls, stop = await self._model_step(messages)
            if not calls:
                self.final_text, self.stop_reason = text, stop
                return
            await asyncio.gather(*(self._tool(call) for call in calls))
        self.stop_reason = "max_steps"

    async def _acp_steps(self, timeout: float) -> None:
        """The turn of an ACP-backed session: its harness answers, not the model (acp_app.executor)."""
        from acp_app.executor import run_acp_turn

        published = 0

        async def on_text(text: str) -> None:
            nonlocal published
            self.partial = text
            await self._delta(text, published)
            published = len(text)

        await self._agent("lifecycle", {"phase": "model", "provider": "acp", "model": self.state.session.agent_id})
        result = await run_acp_turn(run=self.state.run, session=self.state.session, on_text_delta=on_text,
                                    on_tool_event=lambda data: self._agent("tool", data), timeout=timeout,
                                    engine_owner=self.engine.owner)  # fmt: skip
        self.final_text, self.stop_reason, self.partial = result.text, result.stop_reason, ""
        for key, value in result.usage.items():
            self.usage[key] = self.usage.get(key, 0) + value

    async def _finish(self, status: str, *, error: dict | None = None) -> None:
        text = self.final_text if status == Run.Status.OK else self.partial
        if status != Run.Status.OK and self.partial and self.state.session is not None:
            await db(store.record_assistant)(state=self.state, text=self.partial, calls=[], usage={},
                                             stop_reason=self.stop_reason, provider="", model="")  # fmt: skip
        run = await self._write(
            store.finish_run, run_pk=self.run_pk, owner=self.engine.owner, status=status, text=text,
            stop_reason=self.stop_reason, usage=self.usage, error=error, seqs=(self.chat_seq + 1, self.agent_seq + 1),
        )  # fmt: skip
        if run is not None:
            await sync_to_async(_run_hooks, thread_sensitive=False)(run)

    async def _let_go(self, reason: str) -> None:
        if reason == "shutdown":
            await db(store.release_for_shutdown)(run_pk=self.run_pk, owner=self.engine.owner)

    # --- one model step --------------------------------------------------------------

    async def _model_step(self, messages: list[dict[str, Any]]) -> tuple[str, list[ToolCall], str]:
        request = ModelRequest(model=self.model, messages=messages, tools=self._tool_specs())
        text, calls, stop, usage = "", [], "stop", Usage()
        published, last = 0, 0.0
        self.partial = ""
        async for item in get_provider(self.provider_name).stream(request):
            if isinstance(item, TextDelta):
                text += item.text
                self.partial = text
                if time.monotonic() - last >= DELTA_INTERVAL_S:
                    await self._delta(text, published)
                    published, last = len(text), time.monotonic()
            elif isinstance(item, ToolCall):
                calls.append(item)
            elif isinstance(item, Usage):
                usage = item
            elif isinstance(item, Stop):
                stop = item.reason
        if len(text) > published:
            await self._delta(text, published)
        await self._record_step(text, calls, stop, usage)
        return text, calls, stop

    async def _record_step(self, text: str, calls: list[ToolCall], stop: str, usage: Usage) -> None:
        step_usage = {"inputTokens": usage.input_tokens, "outputTokens": usage.output_tokens,
                      "totalTokens": usage.total_tokens}  # fmt: skip
        for key, value in step_usage.items():
            self.usage[key] += value
        await self._agent("usage", step_usage, defer=True)
        call_blocks = [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls]
        await self._write(store.record_assistant, state=self.state, text=text, calls=call_blocks, usage=step_usage,
                          stop_reason=stop, provider=self.provider_name, model=self.model)  # fmt: skip
        self.partial = ""

    def _tool_specs(self) -> list[dict[str, Any]]:
        return [tool.openai_spec() for tool in tools_for(self._tool_context())]

    def _tool_context(self, call_id: str | None = None) -> ToolContext:
        run = self.state.run
        return ToolContext(session_key=run.session_key, agent_id=run.agent_id, run_id=run.run_id, tool_call_id=call_id,
                           policy=self.tool_policy)  # fmt: skip

    async def _tool(self, call: ToolCall) -> None:
        """Run one tool call; its result is recorded and published as soon as it is done."""
        args = {"phase": "start", "name": call.name, "toolCallId": call.id, "args": call.arguments}
        await self._agent("tool", args)
        try:
            result, is_error = await invoke_tool(self._tool_context(call.id), call.name, call.arguments), False
        except GatewayError as exc:
            result, is_error = {"error": exc.message, "code": exc.detail_code}, True
        except Exception as exc:  # a broken tool is the model's problem to read, not the run's end
            logger.exception("tool %s failed in run %s", call.name, self.state.run.run_id)
            result, is_error = {"error": f"{type(exc).__name__}: {exc}"}, True
        block = {"id": call.id, "name": call.name}
        await db(store.record_tool_result)(state=self.state, call=block, result_text=json.dumps(result, default=str),
                                           is_error=is_error)  # fmt: skip
        await self._agent("tool", {"phase": "result", "name": call.name, "toolCallId": call.id,
                                   "result": result, "isError": is_error})  # fmt: skip

    # --- events ----------------------------------------------------------------------

    async def _delta(self, text: str, published: int) -> None:
        heartbeat = self.state.run.kind == Run.Kind.HEARTBEAT
        await self._agent("assistant", {"text": text, "delta": text[published:]}, defer=not heartbeat)
        if heartbeat:
            return  # heartbeat turns are not streamed to chat (spec-a §6.5)
        self.chat_seq += 1
        await self._write(run_events.publish_chat, session=self.state.session, run_id=self.state.run.run_id,
                          seq=self.chat_seq, state="delta", message=run_events.assistant_message(text),
                          deltaText=text[published:])  # fmt: skip

    async def _agent(self, stream: str, data: dict[str, Any], *, defer: bool = False) -> None:
        """An ``agent`` event; ``defer``: it goes out with the write that follows at once."""
        self.agent_seq += 1
        self._deferred.append((self.agent_seq, stream, data))
        if not defer:
            await self._write(None)

    async def _write(self, fn, /, *, then: tuple[str, dict[str, Any]] | None = None, **kwargs):
        """One trip to the database: the deferred agent events, ``fn(**kwargs)``, then the
        agent event ``then``, in one transaction whose events are written together
        (``events.event_batch``)."""
        deferred, self._deferred = self._deferred, []
        after = []
        if then is not None:
            self.agent_seq += 1
            after.append((self.agent_seq, *then))
        return await db(_write)(self.state.session, self.state.run.run_id, deferred, fn, kwargs, after)


def _write(session, run_id: str, before: list, fn, kwargs: dict, after: list):
    with event_batch():
        for seq, stream, data in before:
            run_events.publish_agent(session=session, run_id=run_id, seq=seq, stream=stream, data=data)
        result = fn(**kwargs) if fn is not None else None
        for seq, stream, data in after:
            run_events.publish_agent(session=session, run_id=run_id, seq=seq, stream=stream, data=data)
    return result


def _begin(run_pk: int):
    """The turn's state and its ``(provider, model)`` (or the exception resolving it)."""
    state = store.turn_begin(run_pk=run_pk)
    if state.session is None:
        return state, None
    try:
        return state, _resolve_model(state.session)
    except Exception as exc:
        return state, exc


def _resolve_model(session) -> tuple[str, str]:
    return resolve_session_model(agent_id=session.agent_id, provider_override=session.provider_override,
                                 model_override=session.model_override)  # fmt: skip


def _agent_timeout(agent_id: str) -> int:
    from openclaw_site.config import get_config

    cfg = get_config()
    agent = cfg.agent(agent_id) or cfg.agent(cfg.default_agent_id())
    return agent.timeout_seconds if agent else 600


def settings_max_steps() -> int:
    return int(getattr(settings, "OPENCLAW_ENGINE_MAX_STEPS", 24))


def _run_hooks(run: Run) -> None:
    from ..services.run_hooks import run_finished

    try:
        run_finished(run)
    finally:
        close_old_connections()  # a pool thread's connection: closed unless CONN_MAX_AGE keeps it


def _ms_now() -> int:
    return int(time.time() * 1000)

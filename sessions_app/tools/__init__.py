"""Agent tools: what the model may call during a turn, with JSON schemas.

A tool is ``async def handler(ctx: ToolContext, args: dict) -> dict`` registered with
:func:`agent_tool`. The engine offers the registered tools to the model, runs the
calls of one model step concurrently and records each result as soon as it is done.
``tools.invoke`` (RPC, admin scope) runs a tool as a session's agent would. Which tools
a session sees is its :class:`~sessions_app.tool_policy.ToolPolicy` (depth and role of a
sub-agent, spec-b §1.8), carried by the :class:`ToolContext`.
Tool modules live beside this one and register on import (see ``load_tools``).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from openclaw_site.errors import InvalidParamsError, InvalidRequestError

from ..schema import validate
from ..tool_policy import FULL, ToolPolicy


@dataclass
class ToolContext:
    """The calling session and run (``run_id`` is None for ``tools.invoke``) and the
    session's tool policy (every tool unless the caller computed a narrower one)."""

    session_key: str
    agent_id: str
    run_id: str | None = None
    tool_call_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    policy: ToolPolicy = FULL


@dataclass(frozen=True)
class AgentTool:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: Callable[[ToolContext, dict[str, Any]], Awaitable[dict[str, Any]]]
    # None = every session; else a predicate (ctx) -> bool (e.g. depth policy).
    available: Callable[[ToolContext], bool] | None = None

    def openai_spec(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}  # fmt: skip


_TOOLS: dict[str, AgentTool] = {}
_loaded = False


def agent_tool(name: str, *, description: str, parameters: dict[str, Any], available=None):
    """Register an async tool handler under ``name``."""

    def register(handler):
        if not inspect.iscoroutinefunction(handler):
            raise TypeError(f"agent tool {name} must be async")
        _TOOLS[name] = AgentTool(name, description, parameters, handler, available)
        return handler

    return register


def load_tools() -> None:
    global _loaded
    if _loaded:
        return
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    _loaded = True


def tools_for(ctx: ToolContext) -> list[AgentTool]:
    load_tools()
    return [tool for tool in _TOOLS.values() if ctx.policy.permits(tool.name) and
            (tool.available is None or tool.available(ctx))]  # fmt: skip


def get_tool(name: str) -> AgentTool:
    load_tools()
    tool = _TOOLS.get(name)
    if tool is None:
        raise InvalidRequestError(f"unknown tool: {name}", details={"code": "UNKNOWN_TOOL"})
    return tool


async def invoke_tool(ctx: ToolContext, name: str, args: Any) -> dict[str, Any]:
    """Check the session's policy, validate ``args`` against the tool's schema, run it.
    Raises ``UNKNOWN_TOOL``, ``TOOL_NOT_AVAILABLE`` or invalid params, running nothing."""
    tool = get_tool(name)
    ctx.policy.check(name)
    if not isinstance(args, dict):
        raise InvalidParamsError(name, "must be object")
    errors = validate(tool.parameters, args)
    if errors:
        raise InvalidParamsError(name, "; ".join(errors))
    return await tool.handler(ctx, args)

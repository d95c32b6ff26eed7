"""The gateway's RPC method registry.

Every app declares its methods with :func:`rpc_method` in its own ``rpc`` module(s);
the WebSocket consumer (and ``tools.invoke``/tests) look them up here and call
:func:`dispatch`. A method validates its params against a schema, checks the caller's
scope, then calls ONE service; a sync handler runs in a worker thread with a database
connection, an async one on the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from channels.db import database_sync_to_async

from openclaw_site.errors import GatewayError, InvalidParamsError, InvalidRequestError, MissingScopeError

from ..schema import validate

READ = "operator.read"
WRITE = "operator.write"
ADMIN = "operator.admin"

# A scope implies the scopes below it.
_IMPLIED = {ADMIN: {ADMIN, WRITE, READ}, WRITE: {WRITE, READ}, READ: {READ}}


@dataclass
class RpcContext:
    """Who is calling, and the connection's hooks (subscriptions, event sink)."""

    conn_id: str = "local"
    role: str = "operator"
    scopes: frozenset[str] = frozenset({ADMIN})
    client: dict[str, Any] = field(default_factory=dict)
    user_id: int | None = None
    subscribe: Callable[[str], Awaitable[None]] | None = None
    unsubscribe: Callable[[str], Awaitable[None]] | None = None
    send_event: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None
    # replay_session(session_key, group, load_events) joins the session's group and sends
    # the stored events load_events() returns, then live ones, each sessionSeq once.
    replay_session: Callable[[str, str, Callable[[], Awaitable[list[dict[str, Any]]]]], Awaitable[int]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def has_scope(self, scope: str) -> bool:
        return any(scope in _IMPLIED.get(held, {held}) for held in self.scopes)

    @property
    def client_id(self) -> str:
        return str(self.client.get("id", ""))


@dataclass(frozen=True)
class Method:
    name: str
    scope: str
    schema: dict[str, Any] | None
    handler: Callable[..., Any]

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)


_REGISTRY: dict[str, Method] = {}
_interim_responder: contextvars.ContextVar[Callable[[Any], Awaitable[None]] | None] = contextvars.ContextVar(
    "rpc_interim_responder", default=None
)


def set_interim_responder(send: Callable[[Any], Awaitable[None]] | None) -> None:
    """Set (per request task) how an extra response with the request's id is sent."""
    _interim_responder.set(send)


async def respond_interim(payload: Any) -> bool:
    """Send a first ``res`` frame before the final one (``agent``'s accepted ack);
    False where the transport has no such thing (REST, management commands)."""
    send = _interim_responder.get()
    if send is None:
        return False
    await send(payload)
    return True


def rpc_method(name: str, *, scope: str = READ, schema: dict[str, Any] | None = None):
    """Register ``handler(ctx, params) -> payload`` as the RPC method ``name``."""

    def register(handler):
        _REGISTRY[name] = Method(name=name, scope=scope, schema=schema, handler=handler)
        return handler

    return register


def method_names() -> list[str]:
    return sorted(_REGISTRY)


def get_method(name: str) -> Method:
    method = _REGISTRY.get(name)
    if method is None:
        raise InvalidRequestError(f"unknown method: {name}")
    return method


def check_params(method: Method, params: Any) -> dict[str, Any]:
    if params is None:
        params = {}
    if method.schema is not None:
        errors = validate(method.schema, params)
        if errors:
            raise InvalidParamsError(method.name, "; ".join(errors))
    return params


async def dispatch(ctx: RpcContext, name: str, params: Any) -> Any:
    """Run one RPC call; raises :class:`GatewayError` for every expected failure."""
    method = get_method(name)
    if not ctx.has_scope(method.scope):
        raise MissingScopeError(method.scope)
    params = check_params(method, params)
    if method.is_async:
        return await method.handler(ctx, params)
    return await database_sync_to_async(method.handler)(ctx, params)


def call_sync(ctx: RpcContext, name: str, params: Any) -> Any:
    """Synchronous twin of :func:`dispatch` for management commands and REST views."""
    method = get_method(name)
    if not ctx.has_scope(method.scope):
        raise MissingScopeError(method.scope)
    params = check_params(method, params)
    if method.is_async:
        return asyncio.run(method.handler(ctx, params))
    return method.handler(ctx, params)


__all__ = [
    "ADMIN",
    "READ",
    "WRITE",
    "GatewayError",
    "RpcContext",
    "call_sync",
    "dispatch",
    "get_method",
    "method_names",
    "respond_interim",
    "rpc_method",
    "set_interim_responder",
]

"""Gateway-wide RPC methods: ``health``, ``status``, ``agents.list``."""

from __future__ import annotations

from .. import schema as s
from .. import selectors
from . import READ, RpcContext, rpc_method


@rpc_method("health", scope=READ, schema=s.obj({"probe": s.boolean()}))
def health(ctx: RpcContext, params: dict) -> dict:
    return selectors.health_summary()


# Not closed: the CLI's ``status`` may send options this gateway does not use.
@rpc_method("status", scope=READ, schema=s.obj({}, closed=False))
def status(ctx: RpcContext, params: dict) -> dict:
    return selectors.status_summary()


@rpc_method("agents.list", scope=READ, schema=s.obj({}))
def agents_list(ctx: RpcContext, params: dict) -> dict:
    return selectors.agents_summary()

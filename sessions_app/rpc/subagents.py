"""Sub-agent RPC methods: ``subagents.list`` and ``subagents.spawn`` (the same services as
the ``subagents`` / ``sessions_spawn`` agent tools and ``POST /api/v1/sessions/<key>/spawn``).

Importing this module at startup also registers the announce pipeline's run-finished hook
(``services.announce``), so every process that ends runs announces them.
"""

from __future__ import annotations

from .. import schema as s
from ..services import announce  # noqa: F401 - registers the subagent run-finished hook
from ..tools.subagents import SPAWN_PARAMETERS, spawn_from_args, subagents_action
from . import READ, WRITE, RpcContext, rpc_method

KEY = s.string(min_length=1)


@rpc_method("subagents.list", scope=READ, schema=s.obj({"sessionKey": KEY, "recentMinutes": s.integer(minimum=1)},
                                                        required=("sessionKey",)))  # fmt: skip
def subagents_list(ctx: RpcContext, params: dict) -> dict:
    return subagents_action(caller_session_key=params["sessionKey"],
                            args={"action": "list", "recentMinutes": params.get("recentMinutes")})  # fmt: skip


SPAWN_SCHEMA = {**SPAWN_PARAMETERS, "properties": {**SPAWN_PARAMETERS["properties"], "sessionKey": KEY,
                                                    "expectsCompletionMessage": s.boolean()},
                "required": ["sessionKey", "task"]}  # fmt: skip


@rpc_method("subagents.spawn", scope=WRITE, schema=SPAWN_SCHEMA)
def subagents_spawn(ctx: RpcContext, params: dict) -> dict:
    """``sessions_spawn`` on a session's behalf; ``expectsCompletionMessage: false`` makes
    the announce an ordinary internal completion (queue/steer first, spec-b §3.7)."""
    args = {k: v for k, v in params.items() if k not in ("sessionKey", "expectsCompletionMessage")}
    return spawn_from_args(requester_session_key=params["sessionKey"], requester_run_id=None, args=args,
                           expects_completion_message=params.get("expectsCompletionMessage", True))  # fmt: skip

"""Which agent tools a session's agent may see and call (spec-b §1.8).

- A top-level session (main, cron, a channel peer…) gets every tool.
- A sub-agent never gets ``sessions_send`` nor the gateway's system tools.
- An **orchestrator** (a sub-agent below ``maxSpawnDepth``, so depth 1 when
  ``maxSpawnDepth >= 2``) keeps ``sessions_spawn``, ``subagents``, ``sessions_list`` and
  ``sessions_history``; a **leaf** (at the depth limit) loses them too.
- ``tools.subagents.tools.{allow,deny}`` is a final filter on sub-agents: deny wins, and
  allow can only narrow (``*`` globs match, as in ``session*``).

The engine computes the policy once per turn from the session row it already loaded (no
query per model step); the model is offered only the tools the policy permits, and
:func:`sessions_app.tools.invoke_tool` checks it again, so a hidden tool cannot be called
by name either (``TOOL_NOT_AVAILABLE``, also through ``tools.invoke``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from openclaw_site.errors import NotFoundError

from . import keys

if TYPE_CHECKING:
    from openclaw_site.config import GatewayConfig

    from .models import Session

MAIN, ORCHESTRATOR, LEAF = "main", "orchestrator", "leaf"
SUBAGENT_DENY_ALWAYS = frozenset({
    "sessions_send", "gateway", "agents_list", "session_status", "cron", "memory_search", "memory_get",
    "whatsapp_login",
})  # fmt: skip
SUBAGENT_DENY_LEAF = frozenset({"sessions_spawn", "subagents", "sessions_list", "sessions_history"})


class ToolNotAvailableError(NotFoundError):
    """The session's tool policy hides ``tool`` (OpenClaw answers "Tool not available")."""

    def __init__(self, tool: str, policy: ToolPolicy) -> None:
        super().__init__(
            f"Tool not available: {tool} ({policy.describe()})",
            details={"code": "TOOL_NOT_AVAILABLE", "tool": tool, "role": policy.role, "depth": policy.depth},
        )


@dataclass(frozen=True)
class ToolPolicy:
    role: str = MAIN
    depth: int = 0
    deny: frozenset[str] = frozenset()
    allow: tuple[str, ...] = ()  # empty: no narrowing

    def permits(self, tool: str) -> bool:
        if tool in self.deny or any(fnmatchcase(tool, pattern) for pattern in self.deny if "*" in pattern):
            return False
        return not self.allow or any(fnmatchcase(tool, pattern) for pattern in self.allow)

    def check(self, tool: str) -> None:
        if not self.permits(tool):
            raise ToolNotAvailableError(tool, self)

    def describe(self) -> str:
        return "a top-level session" if self.role == MAIN else f"{self.role} sub-agent at depth {self.depth}"


FULL = ToolPolicy()


def tool_policy(*, role: str, depth: int, cfg: GatewayConfig) -> ToolPolicy:
    """The policy of a session with this sub-agent ``role`` (``main`` for none) and depth."""
    if role == MAIN:
        return FULL
    extra = cfg.tools_subagents or {}
    deny = SUBAGENT_DENY_ALWAYS | (SUBAGENT_DENY_LEAF if role == LEAF else frozenset()) | set(extra.get("deny") or ())
    return ToolPolicy(role=role, depth=depth, deny=frozenset(deny), allow=tuple(extra.get("allow") or ()))


def tool_policy_for_session(session: Session | None, *, key: str | None = None, cfg: GatewayConfig | None = None) -> ToolPolicy:
    """The policy of ``session`` (or of a key without a row): its stored lineage (role and
    ``spawnDepth`` fixed at spawn), else the ``:subagent:`` segments of its key against
    the agent's ``maxSpawnDepth``."""
    from openclaw_site.config import get_config

    cfg = cfg or get_config()
    key = session.key if session is not None else (key or "")
    depth = (session.spawn_depth if session is not None else None) or keys.get_subagent_depth(key)
    role = session.subagent_role if session is not None else None
    if role not in (ORCHESTRATOR, LEAF):
        if depth <= 0 and not keys.is_subagent_session_key(key):
            return FULL
        from .services.subagents import subagents_config

        limit = subagents_config(cfg, keys.resolve_agent_id_from_session_key(key)).max_spawn_depth
        role = ORCHESTRATOR if depth < limit else LEAF
    return tool_policy(role=role, depth=max(depth, 1), cfg=cfg)


def tool_policy_for_key(key: str) -> ToolPolicy:
    """The policy of the session stored under ``key`` (one query; for ``tools.invoke``)."""
    from .models import Session

    return tool_policy_for_session(Session.objects.filter(key=key).first(), key=key)

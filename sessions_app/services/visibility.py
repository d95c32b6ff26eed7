"""Which sessions a session's agent tools may see and message (spec-b §4.3).

``tools.sessions.visibility`` is ``self | tree | agent | all`` (default ``tree``):

- ``self``: only the requester's own session;
- ``tree``: the own session plus the sessions it owns (``spawned_by``,
  ``parent_session_key`` or a hub-delegated worker's owner equal to the requester);
- ``agent``: any session of the requester's agent;
- ``all``: same agent, plus other agents subject to ``tools.agentToAgent``
  ``{enabled, allow}`` (globs with ``*``, case-insensitive, an empty list allows all).

Owned sessions are visible under ``tree`` and ``all`` whatever agent id their key holds
(an ACP child's key names its harness agent). A sandboxed requester is clamped to
``tree`` when ``agents.defaults.sandbox.sessionToolsVisibility`` is ``spawned`` (the
default). Every denial is a :class:`SessionForbiddenError` with OpenClaw's message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db.models import Q

from openclaw_site.errors import ForbiddenError

from ..keys import resolve_agent_id_from_session_key
from ..models import Session

ACTIONS = ("send", "history", "list", "status")
_PREFIX = {"send": "Session send", "history": "Session history", "status": "Session status", "list": "Session list"}
_A2A_NOUN = {"send": "messaging", "history": "history", "status": "status", "list": "listing"}
_A2A_DISABLED_TAIL = {
    "send": "to allow cross-agent sends.",
    "list": "to allow cross-agent visibility.",
}


class SessionForbiddenError(ForbiddenError):
    """A visibility or agent-to-agent policy denial (tool status ``forbidden``)."""

    def __init__(self, message: str, *, key: str | None = None, reason: str = "VISIBILITY") -> None:
        details = {"code": f"SESSION_{reason}", **({"key": key} if key else {})}
        super().__init__(message, details=details)


@dataclass(frozen=True)
class AgentToAgentPolicy:
    """``tools.agentToAgent``: cross-agent access switch and allow globs."""

    enabled: bool = False
    allow: tuple[str, ...] = ()

    def matches(self, agent_id: str) -> bool:
        if not self.allow:
            return True
        return any(_glob_matches(pattern, agent_id) for pattern in self.allow)

    def is_allowed(self, requester_agent_id: str, target_agent_id: str) -> bool:
        if requester_agent_id == target_agent_id:
            return True
        return self.enabled and self.matches(requester_agent_id) and self.matches(target_agent_id)


def _glob_matches(pattern: str, agent_id: str) -> bool:
    raw = str(pattern or "").strip()
    if not raw:
        return False
    if raw == "*":
        return True
    if "*" not in raw:
        return raw == agent_id
    regex = "^" + ".*".join(re.escape(part) for part in raw.split("*")) + "$"
    return re.match(regex, agent_id, re.IGNORECASE) is not None


@dataclass(frozen=True)
class Visibility:
    """The effective visibility of one requester session."""

    requester_key: str
    requester_agent_id: str
    level: str
    a2a: AgentToAgentPolicy
    sandboxed: bool = False


def visibility_for(*, requester_key: str, sandboxed: bool = False) -> Visibility:
    """The requester's effective visibility from the loaded config."""
    from openclaw_site.config import get_config

    cfg = get_config()
    level = cfg.sessions_visibility or "tree"
    if sandboxed and _sandbox_tools_visibility(cfg) == "spawned" and level != "tree":
        level = "tree"
    raw_a2a = cfg.tools_agent_to_agent or {}
    a2a = AgentToAgentPolicy(enabled=bool(raw_a2a.get("enabled")), allow=tuple(raw_a2a.get("allow") or ()))
    return Visibility(
        requester_key=requester_key,
        requester_agent_id=resolve_agent_id_from_session_key(requester_key),
        level=level,
        a2a=a2a,
        sandboxed=sandboxed,
    )


def _sandbox_tools_visibility(cfg) -> str:
    defaults = (cfg.raw.get("agents") or {}).get("defaults") or {}
    return str((defaults.get("sandbox") or {}).get("sessionToolsVisibility") or "spawned")


def owned_filter(requester_key: str) -> Q:
    """Sessions the requester owns: spawned by it, parented to it, or delegated to it."""
    return Q(spawned_by=requester_key) | Q(parent_session_key=requester_key) | Q(acp__owner_session_key=requester_key)


def owned_keys(*, requester_key: str) -> set[str]:
    return set(Session.objects.filter(owned_filter(requester_key)).values_list("key", flat=True))


def is_owned(*, requester_key: str, target_key: str) -> bool:
    return Session.objects.filter(owned_filter(requester_key), key=target_key).exists()


def visibility_check(*, visibility: Visibility, target_key: str, action: str = "send", owned: bool | None = None) -> None:
    """Raise :class:`SessionForbiddenError` unless the requester may ``action`` the target.

    ``owned`` may be passed when the caller already knows (lists check many rows).
    """
    if target_key == visibility.requester_key:
        return
    level = visibility.level
    if owned is None:
        owned = level in ("tree", "all") and is_owned(requester_key=visibility.requester_key, target_key=target_key)
    if owned and level in ("tree", "all"):
        return
    target_agent = resolve_agent_id_from_session_key(target_key)
    if target_agent != visibility.requester_agent_id:
        _check_cross_agent(visibility, target_agent, action, target_key)
        return
    if level == "self":
        raise SessionForbiddenError(
            f"{_PREFIX[action]} visibility is restricted to the current session (tools.sessions.visibility=self).",
            key=target_key,
        )
    if level == "tree":
        raise SessionForbiddenError(
            f"{_PREFIX[action]} visibility is restricted to the current session tree (tools.sessions.visibility=tree).",
            key=target_key,
        )


def _check_cross_agent(visibility: Visibility, target_agent: str, action: str, target_key: str | None) -> None:
    if visibility.level != "all":
        raise SessionForbiddenError(
            f"{_PREFIX[action]} visibility is restricted. Set tools.sessions.visibility=all to allow cross-agent access.",
            key=target_key,
        )
    a2a_check(visibility=visibility, target_agent_id=target_agent, action=action, key=target_key)


def a2a_check(*, visibility: Visibility, target_agent_id: str, action: str = "send", key: str | None = None) -> None:
    """Enforce ``tools.agentToAgent`` for a cross-agent access (same agent always passes)."""
    if target_agent_id == visibility.requester_agent_id:
        return
    noun = _A2A_NOUN[action]
    if not visibility.a2a.enabled:
        tail = _A2A_DISABLED_TAIL.get(action, "to allow cross-agent access.")
        raise SessionForbiddenError(
            f"Agent-to-agent {noun} is disabled. Set tools.agentToAgent.enabled=true {tail}",
            key=key,
            reason="A2A_DISABLED",
        )
    if not visibility.a2a.is_allowed(visibility.requester_agent_id, target_agent_id):
        raise SessionForbiddenError(
            f"Agent-to-agent {noun} denied by tools.agentToAgent.allow.", key=key, reason="A2A_DENIED"
        )


def visible_session_filter(*, visibility: Visibility) -> Q | None:
    """A queryset filter narrowing a list to what may be visible (None = no narrowing).

    Cross-agent rows under ``all`` still need :func:`visibility_check`.
    """
    own = Q(key=visibility.requester_key)
    if visibility.level == "self":
        return own
    if visibility.level == "tree":
        return own | owned_filter(visibility.requester_key)
    if visibility.level == "agent":
        return own | Q(agent_id=visibility.requester_agent_id)
    return None

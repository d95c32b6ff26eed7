"""The session visibility guard (spec-b §4.3): self, tree, agent, all, the
agent-to-agent policy for cross-agent access, owned rows and sandbox clamping."""

from __future__ import annotations

import pytest

from acp_app.models import AcpSession
from sessions_app.services.sessions import session_ensure
from sessions_app.services.visibility import SessionForbiddenError, visibility_check, visibility_for

pytestmark = pytest.mark.django_db

ME = "agent:main:main"
CHILD = "agent:main:subagent:kid"
PEER = "agent:main:peer"
OTHER = "agent:ops:main"


def configure(gateway_config, visibility: str, a2a: dict | None = None, **extra):
    gateway_config({
        "agents": {"list": [{"id": "main", "default": True}, {"id": "ops"}, {"id": "codex"}], **extra},
        "tools": {"sessions": {"visibility": visibility}, "agentToAgent": a2a or {"enabled": False}},
    })  # fmt: skip
    session_ensure(key=ME)
    session_ensure(key=CHILD, defaults={"spawned_by": ME})
    session_ensure(key=PEER)
    session_ensure(key=OTHER)


def denied(target: str, action: str = "send", sandboxed: bool = False) -> str | None:
    try:
        visibility_check(visibility=visibility_for(requester_key=ME, sandboxed=sandboxed), target_key=target, action=action)
    except SessionForbiddenError as error:
        return error.message
    return None


def test_self_allows_only_the_own_session(gateway_config):
    configure(gateway_config, "self")
    assert denied(ME) is None
    assert denied(CHILD) == (
        "Session send visibility is restricted to the current session (tools.sessions.visibility=self)."
    )


def test_tree_allows_owned_sessions_only(gateway_config):
    configure(gateway_config, "tree")
    assert denied(CHILD) is None
    assert denied(PEER, action="history") == (
        "Session history visibility is restricted to the current session tree (tools.sessions.visibility=tree)."
    )


def test_agent_allows_same_agent_but_not_other_agents(gateway_config):
    configure(gateway_config, "agent")
    assert denied(PEER) is None
    assert denied(OTHER) == (
        "Session send visibility is restricted. Set tools.sessions.visibility=all to allow cross-agent access."
    )


@pytest.mark.parametrize(
    ("a2a", "message"),
    [
        ({"enabled": False}, "Agent-to-agent messaging is disabled. Set tools.agentToAgent.enabled=true to allow cross-agent sends."),
        ({"enabled": True, "allow": ["main", "finance-*"]}, "Agent-to-agent messaging denied by tools.agentToAgent.allow."),
        ({"enabled": True, "allow": ["main", "O*"]}, None),
        ({"enabled": True, "allow": []}, None),
    ],
)  # fmt: skip
def test_all_needs_the_agent_to_agent_policy_for_other_agents(gateway_config, a2a, message):
    configure(gateway_config, "all", a2a)
    assert denied(PEER) is None
    assert denied(OTHER) == message


def test_list_messages_name_the_action(gateway_config):
    configure(gateway_config, "all", {"enabled": False})
    assert denied(OTHER, action="list") == (
        "Agent-to-agent listing is disabled. Set tools.agentToAgent.enabled=true to allow cross-agent visibility."
    )


def test_owned_acp_child_with_a_foreign_agent_key_is_visible_under_tree(gateway_config):
    """A delegated worker's key names its harness agent; ownership beats the agent comparison."""
    configure(gateway_config, "tree")
    worker, _ = session_ensure(key="agent:codex:acp:w1")
    AcpSession.objects.create(session=worker, harness_agent="codex", owner_session_key=ME)
    assert denied(worker.key) is None
    assert denied("agent:codex:acp:w2") is not None


def test_sandboxed_requester_is_clamped_to_tree(gateway_config):
    configure(gateway_config, "agent")
    assert denied(PEER, sandboxed=False) is None
    assert "current session tree" in denied(PEER, sandboxed=True)
    assert denied(CHILD, sandboxed=True) is None

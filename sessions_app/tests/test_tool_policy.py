"""Tools by depth and role (spec-b §1.8): what a session's model is offered, and that a
hidden tool cannot be called by name, through the engine or ``tools.invoke``."""

from __future__ import annotations

import asyncio

import pytest

from openclaw_site.config import get_config
from sessions_app.models import Session
from sessions_app.services.sessions import session_ensure
from sessions_app.services.subagents import subagent_spawn
from sessions_app.tool_policy import FULL, LEAF, ORCHESTRATOR, ToolNotAvailableError, tool_policy, tool_policy_for_session
from sessions_app.tools import ToolContext, invoke_tool, tools_for

pytestmark = pytest.mark.django_db
MAIN = "agent:main:main"
SESSION_TOOLS = {"sessions_list", "sessions_history", "sessions_send", "sessions_spawn", "subagents"}


def offered(policy) -> set[str]:
    return {tool.name for tool in tools_for(ToolContext(session_key="k", agent_id="main", policy=policy))}


def spawned(requester: str = MAIN) -> Session:
    result = subagent_spawn(requester_session_key=requester, requester_run_id=None, task="work")
    assert result["status"] == "accepted", result
    return Session.objects.get(key=result["childSessionKey"])


def test_a_top_level_session_sees_every_tool():
    session, _ = session_ensure(key=MAIN)
    assert tool_policy_for_session(session) is FULL
    assert SESSION_TOOLS <= offered(FULL)


def test_a_leaf_sees_no_session_tools_and_an_orchestrator_keeps_spawn_and_subagents(gateway_config):
    gateway_config({"agents": {"defaults": {"subagents": {"maxSpawnDepth": 2}}}})
    session_ensure(key=MAIN)
    orchestrator = spawned()
    leaf = spawned(orchestrator.key)
    orchestrator_policy, leaf_policy = tool_policy_for_session(orchestrator), tool_policy_for_session(leaf)
    assert (orchestrator_policy.role, orchestrator_policy.depth) == (ORCHESTRATOR, 1)
    assert (leaf_policy.role, leaf_policy.depth) == (LEAF, 2)
    assert offered(orchestrator_policy) & SESSION_TOOLS == {"sessions_list", "sessions_history", "sessions_spawn",
                                                             "subagents"}  # fmt: skip
    assert offered(leaf_policy) & SESSION_TOOLS == set()
    assert leaf_policy.permits("web_search") and not leaf_policy.permits("cron")  # other tools stay, system ones go


def test_depth_one_is_a_leaf_by_default():
    session_ensure(key=MAIN)
    child = spawned()
    assert tool_policy_for_session(child).role == LEAF
    # A sub-agent key without a row (no stored lineage) is judged by its key's depth.
    assert tool_policy_for_session(None, key="agent:main:subagent:x").role == LEAF


def test_a_hidden_tool_cannot_be_called_by_name_and_nothing_runs():
    session_ensure(key=MAIN)
    child = spawned()
    ctx = ToolContext(session_key=child.key, agent_id="main", policy=tool_policy_for_session(child))
    with pytest.raises(ToolNotAvailableError) as raised:
        asyncio.run(invoke_tool(ctx, "sessions_spawn", {"task": "grandchild"}))
    assert raised.value.details == {"code": "TOOL_NOT_AVAILABLE", "tool": "sessions_spawn", "role": "leaf", "depth": 1}
    assert str(raised.value) == "Tool not available: sessions_spawn (leaf sub-agent at depth 1)"
    assert not Session.objects.filter(spawned_by=child.key).exists()


def test_the_config_filter_denies_first_and_allow_only_narrows(gateway_config):
    gateway_config({"agents": {"defaults": {"subagents": {"maxSpawnDepth": 2}}},
                    "tools": {"subagents": {"tools": {"allow": ["session*", "subagents", "test_sleep"],
                                                      "deny": ["sessions_history"]}}}})  # fmt: skip
    cfg = get_config()
    policy = tool_policy(role=ORCHESTRATOR, depth=1, cfg=cfg)
    assert offered(policy) == {"sessions_list", "sessions_spawn", "subagents"}
    assert policy.permits("test_sleep") and not policy.permits("web_search")
    # allow cannot give back what the depth policy took away
    leaf = tool_policy(role=LEAF, depth=2, cfg=cfg)
    assert offered(leaf) == set() and leaf.permits("test_sleep")
    narrow = tool_policy(role=ORCHESTRATOR, depth=1, cfg=type(cfg)(tools_subagents={"allow": ["subagents"]}))
    assert offered(narrow) == {"subagents"}
    assert offered(FULL) >= SESSION_TOOLS  # the filter is for sub-agents only

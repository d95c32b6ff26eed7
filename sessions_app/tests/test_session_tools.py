"""sessions_list and sessions_history (spec-b §5): the visibility guard on every row,
tool kinds, delegated workers, and the sanitised, capped history."""

from __future__ import annotations

import pytest

from acp_app.models import AcpSession
from sessions_app.services.sessions import session_ensure, transcript_append
from sessions_app.tools import ToolContext, invoke_tool

pytestmark = pytest.mark.django_db(transaction=True)

ME = "agent:main:main"


@pytest.fixture
def world(gateway_config):
    def build(visibility: str = "tree"):
        gateway_config({"agents": {"list": [{"id": "main", "default": True}, {"id": "ops"}]},
                        "tools": {"sessions": {"visibility": visibility}}})  # fmt: skip
        me, _ = session_ensure(key=ME)
        session_ensure(key="agent:main:subagent:kid", defaults={"spawned_by": ME})
        session_ensure(key="agent:main:cron:nightly")
        session_ensure(key="agent:main:slack:channel:c1")
        session_ensure(key="agent:ops:main")
        worker, _ = session_ensure(key="agent:main:acp:w1", defaults={"label": "coder", "label_scope": ME})
        AcpSession.objects.create(session=worker, harness_agent="codex", owner_session_key=ME)
        return me

    return build


async def tool(name: str, args: dict, key: str = ME) -> dict:
    return await invoke_tool(ToolContext(session_key=key, agent_id="main"), name, args)


def keys_of(result: dict) -> set[str]:
    return {row["sessionKey"] for row in result["sessions"]}


async def test_list_under_tree_shows_own_and_owned_sessions(world):
    await sync(world)("tree")
    result = await tool("sessions_list", {})
    assert keys_of(result) == {ME, "agent:main:subagent:kid", "agent:main:acp:w1"}
    me = next(row for row in result["sessions"] if row["sessionKey"] == ME)
    assert (me["key"], me["kind"]) == ("main", "main")


async def test_list_under_agent_filters_by_kind_and_hides_other_agents(world):
    await sync(world)("agent")
    everything = await tool("sessions_list", {})
    assert "agent:ops:main" not in keys_of(everything)
    kinds = {row["sessionKey"]: (row["kind"], row["channel"]) for row in everything["sessions"]}
    assert kinds["agent:main:cron:nightly"] == ("cron", "internal")
    assert kinds["agent:main:slack:channel:c1"] == ("group", "slack")
    assert keys_of(await tool("sessions_list", {"kinds": ["cron", "bogus"]})) == {"agent:main:cron:nightly"}


async def test_list_delegated_shows_the_owned_workers(world):
    await sync(world)("agent")
    delegated = await tool("sessions_list", {"delegated": True})
    assert keys_of(delegated) == {"agent:main:acp:w1"}
    assert delegated["sessions"][0]["delegated"] is True
    assert "agent:main:acp:w1" not in keys_of(await tool("sessions_list", {"delegated": False}))


async def test_history_sanitises_and_guards(world):
    me = await sync(world)("tree")

    def fill():
        transcript_append(session=me, role="user", content="my key is sk-abcdefghijklmnopqrstuvwx")
        transcript_append(session=me, role="tool", content=[{"type": "toolResult", "text": "tool output"}])
        transcript_append(session=me, role="assistant", content="x" * 5000, usage={"totalTokens": 3})

    await sync(fill)()
    history = await tool("sessions_history", {"sessionKey": "main"})
    assert [m["role"] for m in history["messages"]] == ["user", "assistant"]
    assert "[redacted]" in history["messages"][0]["content"][0]["text"]
    assert history["messages"][1]["content"][0]["text"].endswith("…(truncated)…")
    assert "usage" not in history["messages"][1]
    assert (history["contentRedacted"], history["contentTruncated"], history["totalMessages"]) == (True, True, 3)
    with_tools = await tool("sessions_history", {"sessionKey": ME, "includeTools": True})
    assert [m["role"] for m in with_tools["messages"]] == ["user", "tool", "assistant"]
    refused = await tool("sessions_history", {"sessionKey": "agent:main:cron:nightly"})
    assert refused["status"] == "forbidden"
    assert refused["error"].startswith("Session history visibility is restricted to the current session tree")


async def test_history_is_capped_at_80_kb_oldest_first(world):
    me = await sync(world)("tree")

    def fill():
        for index in range(30):
            transcript_append(session=me, role="assistant", content=f"{index:02d}" + "y" * 3990)

    await sync(fill)()
    history = await tool("sessions_history", {"sessionKey": ME, "limit": 100})
    assert history["bytes"] <= 80 * 1024 and history["droppedMessages"] > 0
    assert history["messages"][-1]["content"][0]["text"].startswith("29")
    assert len(history["messages"]) + history["droppedMessages"] == 30


def sync(fn):
    from asgiref.sync import sync_to_async

    return sync_to_async(fn)

"""Owner boundaries: callers × targets × operations through ``tools.invoke`` (the agent
tools a session's model would call) and the ``acp.delegate.close`` RPC.

The owner ``agent:main:main`` spawned a sub-agent and a hub-delegated ACP worker
(label ``w1``). A peer session of the same agent and a session of another agent try
to read, message, steer, kill and close them. Reading and messaging follow
``tools.sessions.visibility`` (``tree`` by default; ``agent`` and ``all`` widen it);
steering, killing and closing belong to the owner whatever the visibility; a worker is
reachable by label only from its owner (DESIGN §8 rule 4). A refusal changes nothing.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from acp_app import services as acp_services
from acp_app.models import AcpSession
from sessions_app.models import Delivery, Run, Session, SubagentRun, TranscriptEntry
from sessions_app.rpc import RpcContext, dispatch
from sessions_app.services import subagents as subagent_services
from sessions_app.services.sessions import session_ensure, transcript_append
from sessions_app.tests.test_visibility import OTHER  # "agent:ops:main"

pytestmark = pytest.mark.django_db(transaction=True)

OWNER = "agent:main:main"
PEER = "agent:main:dashboard:peer"
CALLERS = {"owner": OWNER, "peer": PEER, "other-agent": OTHER}
OPERATIONS = ("history", "send", "send-by-label", "steer", "kill", "close")
AGENTS = {"list": [{"id": "main", "default": True}, {"id": "ops"}]}


@pytest.fixture
def world(gateway_config, tmp_path, settings):
    """The owner's sub-agent and ACP worker, with a line of transcript each."""
    settings.OPENCLAW_STATE_DIR = tmp_path
    for key in CALLERS.values():
        session_ensure(key=key)
    child = subagent_services.subagent_spawn(requester_session_key=OWNER, requester_run_id=None, task="t", label="kid")
    worker = acp_services.acp_spawn(requester_session_key=OWNER, task="w", agent_id="offline", delegate=True, label="w1")
    keys = {"subagent": child["childSessionKey"], "worker": worker["childSessionKey"]}
    for key in keys.values():
        transcript_append(session=Session.objects.get(key=key), role="assistant", content="secret result")
    return keys


def configure(gateway_config, visibility: str, a2a: bool = False) -> None:
    gateway_config({"agents": AGENTS, "tools": {"sessions": {"visibility": visibility},
                                                "agentToAgent": {"enabled": a2a}}})  # fmt: skip


async def invoke(caller: str, tool: str, args: dict) -> dict:
    payload = await dispatch(RpcContext(), "tools.invoke", {"sessionKey": caller, "tool": tool, "args": args})
    return payload["result"]


async def attempt(operation: str, caller: str, target: str) -> bool:
    """Run one operation; True when it went through."""
    if operation == "history":
        result = await invoke(caller, "sessions_history", {"sessionKey": target})
        if result.get("status") in ("forbidden", "error"):
            return False
        assert "secret result" in str(result["messages"]), result
        return True
    if operation == "send":
        result = await invoke(caller, "sessions_send", {"sessionKey": target, "message": "hi", "timeoutSeconds": 0})
        return result["status"] == "accepted"
    if operation == "send-by-label":
        result = await invoke(caller, "sessions_send", {"label": "w1", "message": "hi", "timeoutSeconds": 0})
        return result["status"] == "accepted" and result.get("sessionKey") == target
    if operation in ("steer", "kill"):
        args = {"action": operation, "target": target, **({"message": "turn left"} if operation == "steer" else {})}
        result = await invoke(caller, "subagents", args)
        return result["status"] in ("ok", "accepted", "done")
    try:
        await dispatch(RpcContext(), "acp.delegate.close", {"sessionKey": caller, "key": target})
    except Exception as error:  # noqa: BLE001 - any refusal
        assert getattr(error, "code", None) in ("INVALID_REQUEST", "FORBIDDEN"), error
        return False
    return True


@sync_to_async
def snapshot(keys: dict) -> tuple:
    """What a refused operation must leave as it was."""
    return (
        Run.objects.count(), Delivery.objects.count(), TranscriptEntry.objects.count(),
        sorted(SubagentRun.objects.values_list("run_id", "status")),
        sorted(AcpSession.objects.values_list("owner_session_key", "state")),
        sorted(Session.objects.values_list("key", "label", "spawned_by")),
    )  # fmt: skip


def target_of(operation: str, keys: dict) -> str:
    return keys["worker"] if operation in ("send-by-label", "close") else keys["subagent"]


# Allowed (caller, operation) pairs per visibility; everything else must be refused.
# The worker's key names its harness agent (agent:offline:acp:…): owned rows override the
# agent-id comparison under tree/all only (spec-b §4.3), so under self and agent even the
# owner cannot message its worker; steer/kill/close are ownership checks, not visibility.
OWNER_ONLY = {("owner", op) for op in OPERATIONS}
EXPECTED = {
    ("tree", False): OWNER_ONLY,
    ("self", False): OWNER_ONLY - {("owner", "history"), ("owner", "send"), ("owner", "send-by-label")},
    ("agent", False): OWNER_ONLY - {("owner", "send-by-label")} | {("peer", "history"), ("peer", "send")},
    ("all", False): OWNER_ONLY | {("peer", "history"), ("peer", "send")},
    ("all", True): OWNER_ONLY | {("peer", "history"), ("peer", "send"), ("other-agent", "history"), ("other-agent", "send")},
}  # fmt: skip
CASES = [
    (visibility, a2a, caller, operation)
    for (visibility, a2a) in EXPECTED
    for caller in CALLERS
    for operation in OPERATIONS
]


@pytest.mark.parametrize(("visibility", "a2a", "caller", "operation"), CASES)
async def test_owner_boundary(world, gateway_config, visibility, a2a, caller, operation):
    await sync_to_async(configure)(gateway_config, visibility, a2a)
    target = target_of(operation, world)
    before = await snapshot(world)
    went_through = await attempt(operation, CALLERS[caller], target)
    expected = (caller, operation) in EXPECTED[(visibility, a2a)]
    assert went_through is expected, (visibility, a2a, caller, operation)
    if not went_through:
        assert await snapshot(world) == before


async def test_a_closed_worker_never_reopens_on_a_follow_up(world, gateway_config):
    await sync_to_async(configure)(gateway_config, "tree")
    assert await attempt("close", OWNER, world["worker"])
    assert not await attempt("send-by-label", OWNER, world["worker"])
    assert not await attempt("close", OWNER, world["worker"])
    state = await AcpSession.objects.filter(session__key=world["worker"]).values_list("state", flat=True).aget()
    assert state == AcpSession.State.CLOSED

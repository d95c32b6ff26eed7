"""Hub-delegated ACP workers end to end in one process: the real run engine, real
processes of the bundled offline agent, the real delivery pipeline of sessions_send."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from acp_app.models import AcpSession
from acp_app.services import acp_spawn
from sessions_app.services.session_send import SendRequest, session_send

from .support import OWNER, acp_state, engine, transcript, wait_run  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

spawn = sync_to_async(acp_spawn)


async def send(label: str, message: str, *, requester: str = OWNER, timeout_s: int = 30) -> dict:
    return await session_send(request=SendRequest(message=message, requester_key=requester, label=label,
                                                  timeout_s=timeout_s))  # fmt: skip


async def test_delegate_persists_after_first_task_and_follow_ups_keep_context(engine):
    """delegate:true, no thread → accepted with the label; the worker survives its first
    task and three follow-ups by label reach the same harness session with its memory."""
    result = await spawn(requester_session_key=OWNER, task="first task", agent_id="offline", delegate=True,
                         label="w1")  # fmt: skip
    assert result["status"] == "accepted" and result["label"] == "w1" and result["mode"] == "session"
    run = await wait_run(result["runId"])
    assert run.status == "ok", run.error
    key = result["childSessionKey"]
    acp = await AcpSession.objects.select_related("session").aget(session__key=key)
    assert acp.owner_session_key == OWNER and acp.state == "idle" and acp.upstream_session_id
    assert ("assistant", "echo #1: first task (remembered: nothing)") in await transcript(key)
    replies = []
    for n, text in enumerate(["second", "third", "fourth"], start=2):
        reply = await send("w1", text)
        assert reply["status"] == "ok", reply
        assert reply["delivery"]["status"] == "skipped"
        replies.append(reply["reply"])
    assert replies[-1] == "echo #4: fourth (remembered: first task | second | third)"
    acp2 = await AcpSession.objects.aget(pk=acp.pk)
    assert acp2.upstream_session_id == acp.upstream_session_id and acp2.process_pid == acp.process_pid

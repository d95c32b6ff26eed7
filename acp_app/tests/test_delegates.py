"""Hub-delegated ACP workers end to end in one process: the real run engine, real
processes of the bundled offline agent, the real delivery pipeline of sessions_send."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from acp_app.models import AcpSession
from acp_app.services import acp_spawn
from openclaw_site.errors import GatewayError
from sessions_app.services.session_send import SendRequest, failure_result, session_send

from .support import OWNER, acp_state, engine, transcript, wait_run  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

spawn = sync_to_async(acp_spawn)


async def send(label: str, message: str, *, requester: str = OWNER, timeout_s: int = 30) -> dict:
    """``sessions_send`` as the tool answers it: resolution failures become results."""
    request = SendRequest(message=message, requester_key=requester, label=label, timeout_s=timeout_s)
    try:
        return await session_send(request=request)
    except GatewayError as error:
        return failure_result(error)


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


# --- helpers of the scenarios below ------------------------------------------------------------

import asyncio  # noqa: E402
import os  # noqa: E402

from acp_app import executor, runtime  # noqa: E402
from acp_app.selectors import delegate_list_for_owner, delegate_status  # noqa: E402
from acp_app.services import delegate_close_for_owner  # noqa: E402
from sessions_app.models import Delivery, Run, SubagentRun  # noqa: E402

from .support import OTHER_OWNER, wait_for  # noqa: E402


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return fh.read().rsplit(b")", 1)[-1].split()[0] not in (b"Z", b"X")


async def worker(label: str = "w1", task: str = "first task") -> str:
    result = await spawn(requester_session_key=OWNER, task=task, agent_id="offline", delegate=True, label=label)
    run = await wait_run(result["runId"])
    assert run.status == "ok", run.error
    return result["childSessionKey"]


async def acp_row(key: str) -> AcpSession:
    return await AcpSession.objects.select_related("session").aget(session__key=key)


# --- scenarios ----------------------------------------------------------------------------------


async def test_list_status_then_close_stops_the_harness_and_rejects_follow_ups(engine):
    """list/status show the live worker; close (owner, by label) clears it, stops its process
    group, empties the list, and a follow-up by label is refused without reopening it."""
    key = await worker()
    pid = (await acp_row(key)).process_pid
    assert pid_alive(pid)
    rows = await sync_to_async(delegate_list_for_owner)(owner_session_key=OWNER)
    assert [acp.session.key for acp in rows] == [key]
    status = await sync_to_async(delegate_status)(owner_session_key=OWNER, label="w1")
    assert status["state"] == "idle" and status["harness"] == "offline" and status["lastActivityAt"]
    closed = await sync_to_async(delegate_close_for_owner)(owner_session_key=OWNER, label="w1")
    assert closed["runtimeNotice"] == "runtime closed"
    await wait_for(lambda: not pid_alive(pid), timeout=10)
    assert await sync_to_async(delegate_list_for_owner)(owner_session_key=OWNER) == []
    reply = await send("w1", "are you there?")
    assert reply["status"] == "error" and "No session found with label" in reply["error"]
    assert runtime.default_runtime().get(key) is None
    assert not await Run.objects.filter(session__key=key, status="queued").aexists()
    assert (await acp_row(key)).state == "closed"


async def test_another_owner_cannot_reach_the_label(engine):
    await worker()
    reply = await send("w1", "let me in", requester=OTHER_OWNER)
    assert reply["status"] == "forbidden" and "only its owner" in reply["error"]


async def test_idle_ttl_closes_the_process_and_the_next_turn_resumes(engine):
    """After the runtime TTL the watcher closes the harness; the next follow-up starts a new
    process that loads the stored upstream session (its memory is intact)."""
    key = await worker()
    before = await acp_row(key)
    runtime.default_runtime()._idle_ttl = 0.3
    await asyncio.sleep(0.5)
    assert key in await executor.sweep_runtime()
    await wait_for(lambda: not pid_alive(before.process_pid), timeout=10)
    assert (await acp_row(key)).process_pid is None
    reply = await send("w1", "after the nap")
    assert reply["status"] == "ok", reply
    assert reply["reply"] == "echo #2: after the nap (remembered: first task)"
    after = await acp_row(key)
    assert after.process_pid != before.process_pid and after.upstream_session_id == before.upstream_session_id
    assert runtime.default_runtime().get(key).resumed


async def test_harness_crash_ends_the_turn_and_the_next_turn_recovers(engine):
    key = await worker()
    crashed = await send("w1", "crash-now please")
    assert crashed["status"] == "error" and "exited unexpectedly" in crashed["error"]
    row = await acp_row(key)
    assert row.state == "error" and "exited unexpectedly" in row.last_error and row.process_pid is None
    reply = await send("w1", "still there?")
    assert reply["status"] == "ok" and reply["reply"] == "echo #2: still there? (remembered: first task)"
    assert (await acp_row(key)).state == "idle"


async def test_timeout_is_honoured_with_a_slow_harness_and_the_reply_arrives_later(engine):
    """timeoutSeconds=1 against a 3 s turn: sessions_send answers accepted in about a second,
    and the reply is delivered to the owner afterwards as a pingback."""
    await worker()
    loop = asyncio.get_running_loop()
    began = loop.time()
    reply = await send("w1", "sleep:3000 take your time", timeout_s=1)
    assert reply["status"] == "accepted" and loop.time() - began < 2.5, reply

    def pingback():
        return Delivery.objects.filter(kind="pingback", target_session_key=OWNER).first()

    delivery = await wait_for(pingback, timeout=20)
    assert "echo #2: sleep:3000 take your time" in str(delivery.payload)


async def test_abort_cancels_the_harness_turn_and_keeps_the_worker(engine):
    from sessions_app.services.chat import run_abort

    key = await worker()
    pid = (await acp_row(key)).process_pid
    started = await send("w1", "sleep:20000 long job", timeout_s=0)
    run = await wait_for(lambda: Run.objects.filter(run_id=started["runId"], status="running").first(), timeout=10)
    await asyncio.sleep(0.5)
    assert await sync_to_async(run_abort)(run=run)
    ended = await wait_run(run.run_id, timeout=10)
    assert ended.status == "aborted"
    assert (await acp_row(key)).process_pid == pid and pid_alive(pid)
    reply = await send("w1", "next")
    assert reply["status"] == "ok" and reply["reply"] == "echo #2: next (remembered: first task)"


async def test_oneshot_run_mode_announces_and_closes_its_harness(engine):
    result = await spawn(requester_session_key=OWNER, task="one job", agent_id="offline", mode="run")
    run = await wait_run(result["runId"])
    assert run.status == "ok" and run.output["text"] == "echo #1: one job (remembered: nothing)"
    row = await wait_for(lambda: SubagentRun.objects.filter(run_id=result["runId"]).exclude(status="running").first())
    assert row.status == "ok" and "echo #1: one job" in (row.frozen_result or "")
    assert runtime.default_runtime().get(result["childSessionKey"]) is None

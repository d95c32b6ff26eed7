"""The ACP runtime against real processes of the bundled offline agent."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time

import pytest

from acp_app.runtime import (
    AcpAgentForbiddenError,
    AcpAgentNotConfiguredError,
    AcpCapacityError,
    AcpCwdError,
    AcpDisabledError,
    AcpHandleClosedError,
    AcpHarnessCrashedError,
    AcpRuntime,
    AcpSpawnError,
    AcpTurnTimeoutError,
)

pytestmark = pytest.mark.timeout(90)

KEY = "agent:main:acp:worker-1"


def pid_alive(pid: int) -> bool:
    """``os.kill(pid, 0)``, with a zombie (killed, not yet reaped by init) counted as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] not in (b"Z", b"X")
    except FileNotFoundError:
        return False


async def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    path = tmp_path / "offline-acp"
    monkeypatch.setenv("OFFLINE_ACP_STATE_DIR", str(path))
    return path


@pytest.fixture
def workspace(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    return str(path)


@pytest.fixture
async def runtime(state_dir):
    rt = AcpRuntime(startup_timeout=30, term_grace=2, cancel_grace=3)
    yield rt
    await rt.close_all()


async def ensure(rt: AcpRuntime, workspace: str, key: str = KEY, **kwargs):
    return await asyncio.wait_for(
        rt.ensure(acp_session_key=key, harness_id=kwargs.pop("harness_id", "offline"), cwd=workspace, **kwargs), 40
    )


async def prompt(handle, text: str, on_update=None, timeout: float = 20):
    return await asyncio.wait_for(handle.prompt(text, on_update, timeout=timeout), timeout + 10)


# --- basic turns ---------------------------------------------------------------


async def test_initialize_new_session_and_prompt(runtime, workspace):
    handle = await ensure(runtime, workspace)
    assert handle.upstream_session_id.startswith("offline-")
    assert handle.resumed is False and handle.supports_load
    assert handle.agent_info["name"] == "openclaw-offline-acp"
    updates = []

    result = await prompt(handle, "hello", updates.append)

    assert result.stop_reason == "end_turn"
    assert result.text == "echo #1: hello (remembered: nothing)"
    chunks = [u.data["text"] for u in updates if u.kind == "agent_message_chunk"]
    assert len(chunks) == 2 and "".join(chunks) == result.text


async def test_memory_across_prompts_on_one_handle(runtime, workspace):
    handle = await ensure(runtime, workspace)
    await prompt(handle, "first")
    second = await prompt(handle, "second")
    assert second.text == "echo #2: second (remembered: first)"
    assert await ensure(runtime, workspace) is handle
    assert handle.prompt_count == 2


async def test_concurrent_ensures_share_one_process(runtime, workspace):
    handles = await asyncio.gather(*(ensure(runtime, workspace) for _ in range(3)))
    assert len({id(h) for h in handles}) == 1
    assert len(runtime.handles()) == 1


async def test_plan_and_tool_call_updates_are_mapped(runtime, workspace, gateway_config):
    gateway_config({"acp": {"permissionPolicy": "approve-all"}})
    handle = await ensure(runtime, workspace)
    updates = []
    result = await prompt(handle, "make-plan needs-permission", updates.append)
    kinds = [u.kind for u in updates]
    assert kinds[:4] == ["plan", "tool_call", "permission", "tool_call_update"]
    assert [e["content"] for e in result.plan] == ["read the task", "answer it"]
    (call,) = result.tool_calls
    assert call["kind"] == "edit" and call["status"] == "completed" and call["rawOutput"] == {"allowed": True}


# --- idle TTL, dead processes, resume -------------------------------------------


async def test_idle_ttl_reaps_then_ensure_resumes_via_session_load(state_dir, workspace):
    runtime = AcpRuntime(idle_ttl=0.3, term_grace=2)
    try:
        handle = await ensure(runtime, workspace)
        await prompt(handle, "remember the blue door")
        upstream, old_pid = handle.upstream_session_id, handle.pid
        assert await runtime.reap_idle() == []
        await asyncio.sleep(0.5)

        assert await runtime.reap_idle() == [KEY]
        assert handle.closed and not pid_alive(old_pid)

        fresh = await ensure(runtime, workspace, upstream_session_id=upstream)
        assert fresh is not handle and fresh.pid != old_pid
        assert fresh.resumed and fresh.upstream_session_id == upstream
        result = await prompt(fresh, "what door?")
        assert result.text == "echo #2: what door? (remembered: remember the blue door)"
    finally:
        await runtime.close_all()


async def test_handle_past_ttl_is_never_reused_even_before_the_reaper(state_dir, workspace):
    runtime = AcpRuntime(idle_ttl=0.3, term_grace=2)
    try:
        handle = await ensure(runtime, workspace)
        await prompt(handle, "one")
        await asyncio.sleep(0.5)

        fresh = await ensure(runtime, workspace)

        assert fresh is not handle and fresh.resumed
        with pytest.raises(AcpHandleClosedError):
            await prompt(handle, "stale handle")
        assert (await prompt(fresh, "two")).text == "echo #2: two (remembered: one)"
    finally:
        await runtime.close_all()


async def test_killed_process_is_respawned_and_session_loaded(runtime, workspace):
    handle = await ensure(runtime, workspace)
    await prompt(handle, "before the kill")
    os.kill(handle.pid, signal.SIGKILL)
    await wait_until(lambda: not pid_alive(handle.pid))  # dead, maybe not yet reaped by asyncio

    fresh = await ensure(runtime, workspace)

    assert fresh is not handle and fresh.resumed
    assert fresh.upstream_session_id == handle.upstream_session_id
    result = await prompt(fresh, "after")
    assert result.text == "echo #2: after (remembered: before the kill)"


async def test_unknown_upstream_session_falls_back_to_a_new_session(runtime, workspace):
    handle = await ensure(runtime, workspace, upstream_session_id="offline-gone")
    assert handle.resumed is False
    assert "Resource not found" in handle.load_error
    assert handle.upstream_session_id != "offline-gone"
    assert (await prompt(handle, "hi")).text.startswith("echo #1:")


async def test_crash_mid_prompt_raises_promptly_and_next_ensure_recovers(runtime, workspace):
    handle = await ensure(runtime, workspace)
    await prompt(handle, "keep this")
    started = time.monotonic()

    with pytest.raises(AcpHarnessCrashedError) as info:
        await prompt(handle, "crash-now", timeout=60)

    assert time.monotonic() - started < 5
    assert info.value.code == "UNAVAILABLE"
    assert info.value.details["code"] == "ACP_HARNESS_CRASHED"
    assert info.value.details["returncode"] == 17
    fresh = await ensure(runtime, workspace)
    assert fresh.resumed
    assert (await prompt(fresh, "again")).text == "echo #2: again (remembered: keep this)"


# --- cancel and timeouts ---------------------------------------------------------


async def test_cancel_ends_a_slow_prompt(runtime, workspace):
    handle = await ensure(runtime, workspace)
    sleeping = asyncio.Event()

    def on_update(update):
        if update.kind == "agent_message_chunk" and "sleeping" in update.data["text"]:
            sleeping.set()

    turn = asyncio.create_task(prompt(handle, "sleep:30000", on_update))
    await asyncio.wait_for(sleeping.wait(), 10)
    started = time.monotonic()
    await handle.cancel()
    result = await asyncio.wait_for(turn, 5)

    assert result.stop_reason == "cancelled"
    assert time.monotonic() - started < 3
    assert (await prompt(handle, "next")).text == "echo #1: next (remembered: nothing)"


async def test_prompt_timeout_cancels_the_turn_and_keeps_the_handle(runtime, workspace):
    handle = await ensure(runtime, workspace)
    with pytest.raises(AcpTurnTimeoutError) as info:
        await prompt(handle, "sleep:30000", timeout=0.5)
    assert info.value.code == "AGENT_TIMEOUT"
    assert handle.alive
    assert (await prompt(handle, "after timeout")).stop_reason == "end_turn"


# --- permissions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "marker", "allowed"),
    [
        (None, "needs-permission:read", True),
        (None, "needs-permission", False),
        ("approve-reads", "needs-permission:search", True),
        ("approve-all", "needs-permission", True),
        ("deny-all", "needs-permission:read", False),
    ],
)
async def test_permission_policies(runtime, workspace, gateway_config, policy, marker, allowed):
    if policy:
        gateway_config({"acp": {"permissionPolicy": policy}})
    handle = await ensure(runtime, workspace)
    result = await prompt(handle, marker)
    assert result.text.endswith(f"permission: {'allowed' if allowed else 'denied'}")
    (decision,) = result.permissions
    assert decision["allowed"] is allowed and decision["policy"] == (policy or "approve-reads")
    assert result.tool_calls[0]["status"] == ("completed" if allowed else "failed")


async def test_permission_policy_per_ensure_overrides_config(runtime, workspace, gateway_config):
    gateway_config({"acp": {"permissionPolicy": "deny-all"}})
    handle = await ensure(runtime, workspace, permission_policy="approve-all")
    assert (await prompt(handle, "needs-permission")).text.endswith("permission: allowed")


# --- processes ---------------------------------------------------------------------


async def test_close_kills_the_whole_process_group(runtime, workspace):
    handle = await ensure(runtime, workspace)
    result = await prompt(handle, "spawn-child")
    child_pid = int(re.search(r"child-pid: (\d+)", result.text).group(1))
    leader = handle.pid
    assert pid_alive(leader) and pid_alive(child_pid)

    assert await runtime.close(handle, reason="test") is True

    await wait_until(lambda: not pid_alive(leader) and not pid_alive(child_pid), timeout=5)
    assert runtime.get(KEY) is None
    assert await runtime.close(KEY) is False


async def test_stderr_flood_does_not_block_the_agent(runtime, workspace):
    handle = await ensure(runtime, workspace)
    result = await prompt(handle, "flood-stderr:4000000 loud")
    assert result.text.startswith("echo #1: flood-stderr:4000000 loud")
    tail = handle.stderr_tail()
    assert "stderr noise" in tail and len(tail) <= 8 * 1024


async def test_capacity_evicts_the_least_recently_used_idle_handle(state_dir, workspace):
    runtime = AcpRuntime(max_handles=1, term_grace=2)
    try:
        first = await ensure(runtime, workspace, key="agent:main:acp:a")
        second = await ensure(runtime, workspace, key="agent:main:acp:b")
        assert first.closed and runtime.handles() == [second]
        busy = asyncio.create_task(prompt(second, "sleep:2000"))
        await wait_until(lambda: second.busy)
        with pytest.raises(AcpCapacityError):
            await ensure(runtime, workspace, key="agent:main:acp:c")
        await asyncio.wait_for(busy, 10)
    finally:
        await runtime.close_all()


# --- config and spawn failures ----------------------------------------------------


async def test_configured_agent_is_spawned_with_its_command_and_env(runtime, workspace, gateway_config, tmp_path):
    from django.conf import settings

    env = {"PYTHONPATH": str(settings.BASE_DIR), "OFFLINE_ACP_STATE_DIR": str(tmp_path / "custom-state")}
    agent = {"command": sys.executable, "args": ["-m", "acp_app.offline_agent"], "env": env}
    gateway_config({"acp": {"agents": {"custom": agent}, "allowedAgents": ["custom"]}})
    handle = await ensure(runtime, workspace, harness_id="Custom")
    assert handle.harness_id == "custom"
    await prompt(handle, "stored")
    assert (tmp_path / "custom-state" / f"{handle.upstream_session_id}.json").exists()


async def test_policy_and_config_errors(runtime, workspace, gateway_config):
    with pytest.raises(AcpAgentNotConfiguredError):
        await ensure(runtime, workspace, harness_id="codex")
    with pytest.raises(AcpCwdError) as info:
        await ensure(runtime, "relative/path")
    assert info.value.details["errorCode"] == "cwd_resolution_failed"
    gateway_config({"acp": {"allowedAgents": ["codex"]}})
    with pytest.raises(AcpAgentForbiddenError) as info:
        await ensure(runtime, workspace)
    assert info.value.message == 'ACP agent "offline" is not allowed by policy'
    gateway_config({"acp": {"enabled": False}})
    with pytest.raises(AcpDisabledError):
        await ensure(runtime, workspace)
    assert runtime.handles() == []


@pytest.mark.parametrize(
    "agent",
    [
        {"command": "/nonexistent/acp-agent"},
        {"command": sys.executable, "args": ["-c", "import sys; sys.stderr.write('boom'); sys.exit(3)"]},
        {"command": sys.executable, "args": ["-c", "print('not json-rpc', flush=True)"]},
    ],
)
async def test_a_harness_that_cannot_start_fails_promptly(runtime, workspace, gateway_config, agent):
    gateway_config({"acp": {"agents": {"broken": agent}}})
    started = time.monotonic()
    with pytest.raises(AcpSpawnError) as info:
        await ensure(runtime, workspace, harness_id="broken")
    assert time.monotonic() - started < 10
    assert info.value.details["code"] == "ACP_SESSION_INIT_FAILED"
    assert runtime.handles() == []


async def test_cancelling_the_caller_cancels_the_turn(runtime, workspace):
    handle = await ensure(runtime, workspace)
    turn = asyncio.create_task(handle.prompt("sleep:30000", timeout=60))
    await wait_until(lambda: handle.busy)
    await asyncio.sleep(0.3)
    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(turn, 5)
    assert not handle.busy
    assert (await prompt(handle, "still here")).text == "echo #1: still here (remembered: nothing)"


async def test_a_harness_ignoring_sigterm_is_killed_after_the_grace(state_dir, workspace, gateway_config):
    from django.conf import settings

    code = (
        "import signal, runpy; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "runpy.run_module('acp_app.offline_agent', run_name='__main__'); "
        "import time; time.sleep(600)"  # and outlives its stdin closing
    )
    env = {"PYTHONPATH": str(settings.BASE_DIR), "OFFLINE_ACP_STATE_DIR": str(state_dir)}
    gateway_config({"acp": {"agents": {"stubborn": {"command": sys.executable, "args": ["-c", code], "env": env}}}})
    runtime = AcpRuntime(term_grace=0.5)
    try:
        handle = await ensure(runtime, workspace, harness_id="stubborn")
        await prompt(handle, "hello")
        started = time.monotonic()
        await runtime.close(handle)
        assert time.monotonic() - started < 4
    finally:
        await runtime.close_all()
    assert handle.returncode == -signal.SIGKILL and not pid_alive(handle.pid)


def test_idle_ttl_comes_from_acp_runtime_ttl_minutes(gateway_config):
    assert AcpRuntime(idle_ttl=0.5).idle_ttl == 0.5
    gateway_config({"acp": {"runtime": {"ttlMinutes": 5}}})
    assert AcpRuntime().idle_ttl == 300
    gateway_config({"acp": {"runtime": {"ttlMinutes": 0}}})
    assert AcpRuntime().idle_ttl is None


async def test_offline_agent_can_reply_with_the_scripted_model(runtime, workspace, monkeypatch, tmp_path):
    pytest.importorskip("sessions_app.providers.offline")
    rules = tmp_path / "rules.json"
    rules.write_text('[{"match": "ping", "reply": "pong from the scripted model"}]')
    monkeypatch.setenv("OFFLINE_ACP_REPLY", "provider")
    monkeypatch.setenv("OPENCLAW_OFFLINE_RULES", str(rules))
    handle = await ensure(runtime, workspace)
    assert (await prompt(handle, "ping")).text == "pong from the scripted model"
    assert handle.stderr_tail().count("unavailable") == 0

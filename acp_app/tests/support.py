"""Shared helpers of the ACP tests: an in-process run engine and waits on rows."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from acp_app import executor, runtime
from sessions_app.models import Run, TranscriptEntry

OWNER = "agent:main:main"
OTHER_OWNER = "agent:main:dashboard:other"


@pytest.fixture
def acp_state(tmp_path, monkeypatch):
    """Each test gets its own offline-agent memory (session files)."""
    path = tmp_path / "offline-acp"
    monkeypatch.setenv("OFFLINE_ACP_STATE_DIR", str(path))
    return path


@pytest.fixture
async def engine(transactional_db, settings, acp_state):
    """The real run engine on the test's loop; harnesses closed and the runtime reset after."""
    from sessions_app.engine import Engine

    settings.OPENCLAW_ENGINE_POLL_S = 0.1
    eng = Engine(owner="test-engine")
    task = asyncio.create_task(eng.run())
    yield eng
    await eng.stop()
    task.cancel()
    await runtime.default_runtime().close_all()
    runtime._default = None
    executor._loop = None
    if executor._watcher is not None:
        executor._watcher.cancel()
        executor._watcher = None


async def wait_run(run_id: str, timeout: float = 30) -> Run:
    """The run once it reached a terminal state (fails the test after ``timeout``)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        run = await Run.objects.filter(run_id=run_id).afirst()
        if run is not None and run.is_terminal:
            return run
        assert asyncio.get_running_loop().time() < deadline, f"run {run_id} did not finish: {run and run.status}"
        await asyncio.sleep(0.05)


async def wait_for(predicate, timeout: float = 30, pause: float = 0.05):
    """Poll a sync predicate (run in a thread) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await sync_to_async(predicate)()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(pause)


@sync_to_async
def transcript(key: str) -> list[tuple[str, str]]:
    rows = TranscriptEntry.objects.filter(session__key=key, archived=False).order_by("seq")
    return [(entry.role, entry.text) for entry in rows]

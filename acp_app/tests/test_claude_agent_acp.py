"""Interop: a real third-party ACP agent from npm, ``@zed-industries/claude-agent-acp``
(Claude Code through the Claude Agent SDK), driven by the same runtime and engine as the
bundled agent, against a local fake of the Anthropic Messages API with a dummy key.

The package is installed once into ``~/.cache/openclaw-gateway/npm`` (override with
``OPENCLAW_NPM_CACHE``), outside the repository. The test is skipped, with the reason,
only when Node ≥ 20 or npm is missing or npm cannot install the package.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

from acp_app.models import AcpSession
from acp_app.runtime import AcpRuntime
from acp_app.services import acp_spawn
from tests.support.fake_anthropic import FakeAnthropic

from .support import OWNER, acp_state, engine, wait_run  # noqa: F401

pytestmark = [pytest.mark.interop, pytest.mark.timeout(240)]

PACKAGE = "@zed-industries/claude-agent-acp"
VERSION = "0.23.1"
REPLY = "Hello from the fake Claude."


def _node_major() -> int | None:
    node = shutil.which("node")
    if not node:
        return None
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    try:
        return int(out.lstrip("v").split(".")[0])
    except ValueError:
        return None


@pytest.fixture(scope="module")
def agent_entry() -> str:
    """The agent's ``dist/index.js``, installing the package into the cache on first use."""
    major = _node_major()
    if major is None or major < 20:
        pytest.skip(f"claude-agent-acp needs Node >= 20 on PATH (found: {major or 'none'})")
    npm = shutil.which("npm")
    if not npm:
        pytest.skip("claude-agent-acp is installed with npm, which is not on PATH")
    cache = Path(os.environ.get("OPENCLAW_NPM_CACHE") or Path.home() / ".cache" / "openclaw-gateway" / "npm")
    entry = cache / "node_modules" / PACKAGE / "dist" / "index.js"
    if not entry.exists():
        cache.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache), f"{PACKAGE}@{VERSION}"],
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        if done.returncode != 0 or not entry.exists():
            pytest.skip(f"npm could not install {PACKAGE}@{VERSION}: {(done.stderr or done.stdout)[-500:]}")
    return str(entry)


@pytest.fixture
def fake_api():
    with FakeAnthropic(reply=REPLY) as api:
        yield api


def claude_config(entry: str, api: FakeAnthropic, home: Path) -> dict:
    """``acp.agents.claude``: node + the agent, pointed at the fake API with a dummy key
    (``IS_SANDBOX=1`` lets Claude Code skip permission prompts as root)."""
    home.mkdir(exist_ok=True)
    env = {
        "ANTHROPIC_BASE_URL": api.base_url, "ANTHROPIC_API_KEY": "sk-ant-test-dummy", "IS_SANDBOX": "1",
        "HOME": str(home), "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }  # fmt: skip
    return {"acp": {"agents": {"claude": {"command": shutil.which("node"), "args": [entry], "env": env}}}}


async def test_claude_agent_acp_initialize_new_session_prompt_end_turn(agent_entry, fake_api, gateway_config, tmp_path):
    """initialize (the agent names itself), session/new in the cwd, one prompt streamed back
    as message chunks that ends with end_turn; the fake API saw the prompt, streamed."""
    gateway_config(claude_config(agent_entry, fake_api, tmp_path / "home"))
    workspace = tmp_path / "work"
    workspace.mkdir()
    runtime = AcpRuntime(startup_timeout=90)
    kinds: list[str] = []
    try:
        handle = await runtime.ensure(acp_session_key="agent:claude:acp:interop", harness_id="claude", cwd=str(workspace))
        assert handle.agent_info["name"] == PACKAGE and handle.upstream_session_id
        result = await handle.prompt("Say hello to the gateway", lambda update: kinds.append(update.kind), timeout=120)
    finally:
        await runtime.close_all()
    assert result.stop_reason == "end_turn" and result.text == REPLY
    assert "agent_message_chunk" in kinds
    sent = fake_api.message_requests()
    assert sent and sent[-1]["stream"] is True
    assert "Say hello to the gateway" in str(sent[-1]["messages"])


@pytest.mark.django_db(transaction=True)
async def test_claude_agent_acp_as_a_hub_delegated_worker(agent_entry, fake_api, gateway_config, tmp_path, engine):
    """The same agent behind sessions_spawn({runtime: "acp", delegate: true}): the engine's
    ACP turn records the reply and keeps the worker's harness for follow-ups."""
    gateway_config(claude_config(agent_entry, fake_api, tmp_path / "home"))
    workspace = tmp_path / "work"
    workspace.mkdir()
    result = await sync_to_async(acp_spawn)(requester_session_key=OWNER, task="Say hello", agent_id="claude",
                                            delegate=True, label="claude-1", cwd=str(workspace))  # fmt: skip
    assert result["status"] == "accepted", result
    run = await wait_run(result["runId"], timeout=150)
    assert run.status == "ok", run.error
    assert run.output["text"] == REPLY and run.output["stopReason"] == "end_turn"
    acp = await AcpSession.objects.aget(session__key=result["childSessionKey"])
    assert acp.state == "idle" and acp.upstream_session_id and acp.process_pid

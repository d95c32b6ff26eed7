"""The bundled offline ACP agent: ``python -m acp_app.offline_agent`` (ACP over stdio).

It needs no network and replies deterministically, so persistence, resume, cancel,
permissions and crashes of the ACP runtime are testable with real processes:

- the reply to the n-th prompt of a session is
  ``echo #<n>: <text> (remembered: <earlier prompts joined by " | ">)`` (``nothing`` for n=1);
- every session is a JSON file ``<OFFLINE_ACP_STATE_DIR>/<sessionId>.json`` (written after
  each prompt), so ``session/load`` in a new process resumes its memory (the history is
  replayed as ``session/update`` notifications); an unknown id → "Resource not found";
- with ``OFFLINE_ACP_REPLY=provider`` the reply comes from the project's scripted offline
  model (``sessions_app.providers.offline``, Django set up from ``DJANGO_SETTINGS_MODULE``,
  default ``openclaw_site.settings``) given the whole conversation; the echo is the
  fallback when that provider cannot be loaded;
- markers in the prompt text drive the test behaviours:
  ``needs-permission`` (an ``edit`` tool call; ``needs-permission:read`` a ``read`` one)
  asks ``session/request_permission`` and reports ``permission: allowed|denied``;
  ``make-plan`` sends a two-entry plan; ``sleep:<ms>`` waits (ended early by
  ``session/cancel`` → stop reason ``cancelled``); ``crash-now`` exits mid-prompt;
  ``flood-stderr:<bytes>`` writes that much to stderr first; ``spawn-child`` starts a
  long-sleeping child process (same process group) and reports ``child-pid: <pid>``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from acp import (
    PROTOCOL_VERSION,
    RequestError,
    plan_entry,
    run_agent,
    start_tool_call,
    update_agent_message_text,
    update_plan,
    update_tool_call,
    update_user_message_text,
)
from acp.schema import (
    AgentCapabilities,
    Implementation,
    InitializeResponse,
    LoadSessionResponse,
    NewSessionResponse,
    PermissionOption,
    PromptResponse,
)

AGENT_INFO = Implementation(name="openclaw-offline-acp", title="OpenClaw offline ACP agent", version="1.0.0")
_SLEEP = re.compile(r"sleep:(\d+)")
_FLOOD = re.compile(r"flood-stderr:(\d+)")
_PERMISSION = re.compile(r"needs-permission(?::(\w+))?")
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def state_dir() -> Path:
    """Where sessions are kept (``OFFLINE_ACP_STATE_DIR``, else a temp directory)."""
    path = Path(os.environ.get("OFFLINE_ACP_STATE_DIR") or Path(tempfile.gettempdir()) / "openclaw-offline-acp")
    path.mkdir(parents=True, exist_ok=True)
    return path


class SessionStore:
    """Per-session JSON files ``{sessionId, cwd, prompts: [...], replies: [...]}``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def load(self, session_id: str) -> dict[str, Any] | None:
        if not _SESSION_ID.match(session_id):
            return None
        try:
            return json.loads((self.root / f"{session_id}.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def save(self, session: dict[str, Any]) -> None:
        path = self.root / f"{session['sessionId']}.json"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(session), encoding="utf-8")
        os.replace(tmp, path)


def echo_reply(prompts: list[str], text: str) -> str:
    """The deterministic reply to ``text`` after the earlier ``prompts``."""
    remembered = " | ".join(prompts) if prompts else "nothing"
    return f"echo #{len(prompts) + 1}: {text} (remembered: {remembered})"


class EchoReplier:
    """The built-in deterministic reply (:func:`echo_reply`)."""

    async def __call__(self, session: dict[str, Any], text: str) -> str:
        return echo_reply(session["prompts"], text)


class ProviderReplier:
    """The project's scripted offline model, given the conversation as chat messages."""

    def __init__(self) -> None:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openclaw_site.settings")
        import django

        django.setup()
        from sessions_app.providers import ModelRequest, TextDelta
        from sessions_app.providers.offline import OfflineProvider

        self._provider, self._request, self._delta = OfflineProvider(), ModelRequest, TextDelta

    async def __call__(self, session: dict[str, Any], text: str) -> str:
        messages = [{"role": "system", "content": "You are an ACP coding agent."}]
        for prompt, reply in zip(session["prompts"], session["replies"]):
            messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
        messages.append({"role": "user", "content": text})
        request = self._request(model="scripted", messages=messages)
        parts = [item.text async for item in self._provider.stream(request) if isinstance(item, self._delta)]
        return "".join(parts)


Replier = EchoReplier | ProviderReplier


def make_replier() -> Replier:
    """``ProviderReplier`` when ``OFFLINE_ACP_REPLY=provider`` and it loads, else the echo."""
    if os.environ.get("OFFLINE_ACP_REPLY") != "provider":
        return EchoReplier()
    try:
        return ProviderReplier()
    except Exception as exc:  # the provider is optional: never fail the agent over it
        sys.stderr.write(f"offline acp agent: scripted provider unavailable ({exc!r}); echoing\n")
        return EchoReplier()


class OfflineAgent:
    """The agent side of ACP (see the module docstring)."""

    def __init__(self, store: SessionStore, replier: Replier | None = None) -> None:
        self.store = store
        self.replier = replier or EchoReplier()
        self.sessions: dict[str, dict[str, Any]] = {}
        self.cancels: dict[str, asyncio.Event] = {}
        self.conn: Any = None
        self.children: list[subprocess.Popen] = []

    def on_connect(self, conn: Any) -> None:
        self.conn = conn

    async def initialize(self, protocol_version: int, **kwargs: Any) -> InitializeResponse:
        return InitializeResponse(
            protocol_version=PROTOCOL_VERSION,
            agent_capabilities=AgentCapabilities(load_session=True),
            agent_info=AGENT_INFO,
        )

    async def new_session(self, cwd: str, **kwargs: Any) -> NewSessionResponse:
        session = {"sessionId": f"offline-{uuid.uuid4().hex}", "cwd": cwd, "prompts": [], "replies": []}
        self.sessions[session["sessionId"]] = session
        self.store.save(session)
        return NewSessionResponse(session_id=session["sessionId"])

    async def load_session(self, cwd: str, session_id: str, **kwargs: Any) -> LoadSessionResponse:
        session = self._session(session_id)
        for prompt, reply in zip(session["prompts"], session["replies"]):
            await self.conn.session_update(session_id, update_user_message_text(prompt))
            await self.conn.session_update(session_id, update_agent_message_text(reply))
        return LoadSessionResponse()

    async def cancel(self, session_id: str, **kwargs: Any) -> None:
        if event := self.cancels.get(session_id):
            event.set()

    async def prompt(self, session_id: str, prompt: list[Any], **kwargs: Any) -> PromptResponse:
        session = self._session(session_id)
        text = " ".join(getattr(block, "text", "") for block in prompt).strip()
        cancel = self.cancels[session_id] = asyncio.Event()
        try:
            extras = await self._behaviours(session_id, text, cancel)
        finally:
            self.cancels.pop(session_id, None)
        if extras is None:
            return PromptResponse(stop_reason="cancelled")
        reply = " ".join([await self.replier(session, text), *extras])
        await self._say(session_id, reply)
        session["prompts"].append(text)
        session["replies"].append(reply)
        self.store.save(session)
        return PromptResponse(stop_reason="end_turn")

    async def _behaviours(self, session_id: str, text: str, cancel: asyncio.Event) -> list[str] | None:
        """Run the markers of the prompt; extra reply parts, or None when cancelled."""
        extras: list[str] = []
        if match := _FLOOD.search(text):
            _flood_stderr(int(match.group(1)))
        if "crash-now" in text:
            await self.conn.session_update(session_id, update_agent_message_text("working… "))
            os._exit(17)
        if match := _SLEEP.search(text):
            await self.conn.session_update(session_id, update_agent_message_text("sleeping… "))
            if await _cancelled_within(cancel, int(match.group(1)) / 1000):
                return None
        if "make-plan" in text:
            await self._plan(session_id)
        if match := _PERMISSION.search(text):
            extras.append(await self._tool_with_permission(session_id, match.group(1) or "edit"))
        if "spawn-child" in text:
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            self.children.append(child)
            extras.append(f"child-pid: {child.pid}")
        return extras

    async def _plan(self, session_id: str) -> None:
        entries = [plan_entry("read the task", status="completed"), plan_entry("answer it", status="in_progress")]
        await self.conn.session_update(session_id, update_plan(entries))

    async def _tool_with_permission(self, session_id: str, kind: str) -> str:
        call_id = f"call-{uuid.uuid4().hex[:8]}"
        start = start_tool_call(call_id, f"offline {kind}", kind=kind, status="pending", raw_input={"kind": kind})
        await self.conn.session_update(session_id, start)
        options = [
            PermissionOption(option_id="allow", name="Allow", kind="allow_once"),
            PermissionOption(option_id="reject", name="Reject", kind="reject_once"),
        ]
        response = await self.conn.request_permission(
            session_id=session_id, tool_call=update_tool_call(call_id), options=options
        )
        outcome = response.outcome
        allowed = getattr(outcome, "outcome", "") == "selected" and getattr(outcome, "option_id", "") == "allow"
        status = "completed" if allowed else "failed"
        await self.conn.session_update(
            session_id, update_tool_call(call_id, status=status, raw_output={"allowed": allowed})
        )
        return f"permission: {'allowed' if allowed else 'denied'}"

    async def _say(self, session_id: str, reply: str) -> None:
        """Stream the reply in two chunks (clients must concatenate them)."""
        middle = len(reply) // 2
        for part in (reply[:middle], reply[middle:]):
            await self.conn.session_update(session_id, update_agent_message_text(part))

    def _session(self, session_id: str) -> dict[str, Any]:
        session = self.sessions.get(session_id) or self.store.load(session_id)
        if session is None:
            raise RequestError.resource_not_found(session_id)
        self.sessions[session_id] = session
        return session


async def _cancelled_within(cancel: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(cancel.wait(), seconds)
    except TimeoutError:
        return False
    return True


def _flood_stderr(size: int) -> None:
    line = b"offline agent stderr noise " * 40 + b"\n"
    written = 0
    while written < size:
        sys.stderr.buffer.write(line)
        written += len(line)
    sys.stderr.buffer.flush()


def main() -> None:
    started = time.monotonic()
    agent = OfflineAgent(SessionStore(state_dir()), make_replier())
    try:
        asyncio.run(run_agent(agent))
    except KeyboardInterrupt:
        pass
    finally:
        sys.stderr.write(f"offline acp agent exits after {time.monotonic() - started:.1f}s\n")


if __name__ == "__main__":
    main()

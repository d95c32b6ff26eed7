"""Helpers of the browser tests: the scripted model's rules, logging in, screenshots,
and the WebChat page as a person uses it."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.live import ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]  # fmt: skip
SHOTS = ROOT / "test-artifacts" / "screenshots"
WAIT_MS = 15_000
USERNAME, PASSWORD = "operator", "operator-pass-1"

SLOW_REPLY = ("Here is a slow answer, streamed in small pieces so you can watch it grow, "
              "one chunk at a time, until it ends. THE-END")  # fmt: skip
LONG_REPLY = " ".join(f"word{i}" for i in range(400))
CHILD_RESULT = r"<<<BEGIN_UNTRUSTED_CHILD_RESULT>>>\n(.*)\n<<<END_UNTRUSTED_CHILD_RESULT>>>"


def spawn(task: str, label: str, **extra) -> dict:
    return {"name": "sessions_spawn", "arguments": {"task": task, "label": label, "cleanup": "keep", **extra}}


def delegate(task: str, label: str) -> dict:
    return spawn(task, label, runtime="acp", agentId="offline", delegate=True)


# The scripted model of the hub, its sub-agents (first match wins; see docs/offline-model.md).
RULES = [
    {"on": "user", "match": "tell me something slow", "reply": SLOW_REPLY, "chunkSize": 6, "chunkDelayMs": 120},
    {"on": "user", "match": "tell me a very long story", "reply": LONG_REPLY, "chunkSize": 8, "chunkDelayMs": 200},
    {"on": "user", "match": "please spawn widgets", "toolCalls": [spawn("count the widgets", "widgets")]},
    {"on": "user", "match": "please spawn slowpoke", "toolCalls": [spawn("dawdle for a while", "slowpoke")]},
    {"on": "user", "match": "please spawn sleepy", "toolCalls": [spawn("dawdle for a while", "sleepy")]},
    {"on": "user", "match": "please delegate builder", "toolCalls": [delegate("build the widget", "builder")]},
    {"on": "user", "match": "please delegate tester", "toolCalls": [delegate("test the widget", "tester")]},
    {"on": "user", "match": "follow up builder", "toolCalls": [{"name": "sessions_send", "arguments": {
        "label": "builder", "message": "add tests", "timeoutSeconds": 0}}]},
    {"on": "user", "match": "focus on blue", "reply": "blue widgets: 7"},
    {"on": "user", "match": "[Subagent Task]: count the widgets", "reply": "There are 42 widgets."},
    {"on": "user", "match": "[Subagent Task]: dawdle for a while", "reply": "stale dawdling output", "delayMs": 60000},
    {"on": "user", "regex": CHILD_RESULT, "reply": "The sub-agent reports: {1}"},
    {"on": "tool", "reply": "On it."},
]  # fmt: skip
CONFIG = {"agents": {"defaults": {"heartbeat": {"every": "0m"}}}}


def db(fn, *args, **kwargs):
    """Run an ORM call in a thread of its own (not in Playwright's event loop) and return
    its result; the thread's connection is closed after."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    def call():
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result(timeout=30)


def login(page, gateway, next_path: str = "/") -> None:
    """Log in through the admin login form, landing on ``next_path``."""
    page.goto(f"{gateway.http_url}/admin/login/?next={next_path}")
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(re.compile(re.escape(gateway.http_url + next_path.split("?")[0])))


def screenshot(page, name: str, **options) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), **options)
    return path


class Hub:
    """The WebChat page as a person uses it."""

    def __init__(self, page, gateway) -> None:
        self.page = page
        self.gateway = gateway

    def open(self, session: str | None = None) -> "Hub":
        from playwright.sync_api import expect

        login(self.page, self.gateway, "/" + (f"?session={session}" if session else ""))
        expect(self.page.locator("#conn-state")).to_have_attribute("data-state", "connected")
        expect(self.page.locator("#session-state")).not_to_have_attribute("data-state", "unknown")
        return self

    def send(self, text: str) -> None:
        self.page.fill("#input", text)
        self.page.press("#input", "Enter")

    @property
    def messages(self):
        return self.page.locator("#messages li[data-id]")

    def assistant(self, text: str):
        return self.page.locator("#messages li.msg-assistant[data-id]").filter(has_text=text)

    @property
    def stream(self):
        return self.page.locator("#messages li.streaming")

    def worker(self, label: str):
        return self.page.locator(f"#workers button.worker[data-label='{label}']")

    def rendered_ids(self) -> list[str]:
        return self.page.eval_on_selector_all("#messages li[data-id]", "items => items.map(i => i.dataset.id)")

    def drop_connection(self, backoff_step: int = 0) -> None:
        """Close the socket from the page; ``backoff_step`` picks the reconnect delay."""
        self.page.evaluate("step => { const g = window.webchat.gateway; g.attempt = step; g.socket.close(); }",
                           backoff_step)  # fmt: skip



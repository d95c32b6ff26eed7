"""The workers panel of the hub: sub-agents and delegated ACP workers spawned from chat
appear live with their results; follow-up, steer, kill and close from the panel (the same
slash commands and tools the chat uses) and close from the admin."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from acp_app.models import AcpSession
from sessions_app.models import SubagentRun

from .support import Hub, db, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]


def open_viewer(hub: Hub, label: str):
    hub.worker(label).click()
    viewer = hub.page.locator("#viewer")
    expect(viewer).to_be_visible()
    expect(viewer.locator("[data-viewer=title]")).to_have_text(label)
    return viewer


def act(viewer, action: str, message: str = "") -> None:
    if message:
        viewer.locator("[data-viewer=input]").fill(message)
    viewer.locator(f"[data-action={action}]").click()


def test_subagent_spawned_from_chat_appears_with_its_result_and_takes_a_follow_up(hub: Hub):
    """The hub's model spawns a sub-agent: the panel shows it with its state and result, the
    announce reaches the hub; the read-only transcript opens; a follow-up from the panel
    reaches the kept child and its answer comes back to the hub."""
    hub.open()
    hub.send("please spawn widgets")
    card = hub.worker("widgets")
    expect(card).to_be_visible()
    expect(card.locator(".runtime")).to_have_text("sub-agent")
    expect(card.locator(".worker-preview")).to_have_text("There are 42 widgets.")
    expect(card.locator(".chip")).to_have_text("ok")
    expect(hub.assistant("The sub-agent reports: There are 42 widgets.")).to_have_count(1)
    expect(hub.page.locator("#messages li.msg-internal")).to_contain_text("announce from")

    viewer = open_viewer(hub, "widgets")
    expect(viewer.locator("[data-testid=viewer-messages]")).to_contain_text("There are 42 widgets.")
    expect(viewer.locator("[data-action=close]")).to_be_hidden()
    act(viewer, "followup", "focus on blue")
    expect(viewer.locator("[data-viewer=status]")).to_contain_text("Follow-up")
    expect(viewer.locator("[data-testid=viewer-messages]")).to_contain_text("blue widgets: 7")
    viewer.locator("[data-viewer=close]").click()
    expect(hub.assistant("The sub-agent reports: blue widgets: 7")).to_have_count(1)
    expect(hub.page.locator("#session-state")).to_have_attribute("data-state", "idle")
    hub.page.locator("#input").focus()
    screenshot(hub.page, "hub")


def test_subagent_steer_and_kill_from_the_panel(hub: Hub):
    """Steer restarts a running child with new instructions (`/subagents steer`); kill stops
    another one (`/subagents kill`), which then never announces."""
    hub.open()
    hub.send("please spawn slowpoke")
    expect(hub.worker("slowpoke").locator(".chip")).to_have_text("running")
    act(open_viewer(hub, "slowpoke"), "steer", "focus on blue")
    expect(hub.page.locator("#messages li.msg-user.command")).to_contain_text("/subagents steer slowpoke focus on blue")
    expect(hub.assistant("Steered slowpoke.")).to_have_count(1)
    expect(hub.assistant("The sub-agent reports: blue widgets: 7")).to_have_count(1)
    hub.page.locator("#viewer [data-viewer=close]").click()

    hub.send("please spawn sleepy")
    expect(hub.worker("sleepy").locator(".chip")).to_have_text("running")
    act(open_viewer(hub, "sleepy"), "kill")
    expect(hub.assistant("Killed sleepy.")).to_have_count(1)
    expect(hub.worker("sleepy").locator(".chip")).to_have_text("killed")
    assert db(lambda: SubagentRun.objects.get(label="sleepy").status) == SubagentRun.Status.KILLED


def test_delegate_follow_ups_by_label_and_close_from_the_panel_and_the_admin(hub: Hub):
    """A delegated ACP worker spawned from chat shows in the panel with its harness; the hub
    follows it up by label (chat, then the panel); Close in the panel sends `/acp delegate
    close` and the worker leaves the panel; a second worker is closed from the admin."""
    hub.open()
    hub.send("please delegate builder")
    card = hub.worker("builder")
    expect(card.locator(".runtime")).to_have_text("ACP · offline")
    expect(card.locator(".worker-preview")).to_contain_text("echo #1: build the widget")
    hub.send("follow up builder")
    expect(card.locator(".worker-preview")).to_contain_text("echo #2: add tests")

    viewer = open_viewer(hub, "builder")
    expect(viewer.locator("[data-action=steer]")).to_be_hidden()
    act(viewer, "followup", "add docs")
    expect(viewer.locator("[data-testid=viewer-messages]")).to_contain_text("echo #3: add docs")
    act(viewer, "close")
    expect(hub.assistant('Closed hub-delegated session "builder"')).to_have_count(1)
    hub.page.locator("#viewer [data-viewer=close]").click()
    expect(card).to_have_count(0)
    hub.send("/acp delegate list")
    expect(hub.assistant("ACP hub-delegated sessions:")).to_contain_text("(none)")

    hub.send("please delegate tester")
    expect(hub.worker("tester").locator(".worker-preview")).to_contain_text("echo #1: test the widget")
    admin = hub.page.context.new_page()
    admin.goto(f"{hub.gateway.http_url}/admin/acp_app/delegate/")
    admin.locator("#result_list tbody tr", has_text="tester").locator("input[name=_selected_action]").check()
    admin.select_option("select[name=action]", "close_delegates")
    admin.click("button[name=index]")
    expect(admin.locator("ul.messagelist li.success")).to_be_visible()
    admin.close()
    expect(hub.worker("tester")).to_have_count(0)
    states = db(lambda: sorted(AcpSession.objects.values_list("state", flat=True)))
    assert states == ["closed", "closed"]

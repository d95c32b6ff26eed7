"""The WebChat hub in a real browser: log in, a streamed reply, abort, reconnect-and-resume
without loss or duplicates, history with infinite scroll, slash commands, phone size."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from sessions_app.models import Run, Session, TranscriptEntry

from .support import SLOW_REPLY, Hub, db, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

MAIN = "agent:main:main"


def current_transcript(key: str = MAIN) -> list[TranscriptEntry]:
    """The session's current transcript, oldest first (read outside Playwright's loop)."""

    def read():
        session = Session.objects.get(key=key)
        return list(TranscriptEntry.objects.filter(session=session, archived=False).order_by("seq"))

    return db(read)


def fill_history(count: int) -> None:
    from sessions_app.services.sessions import session_ensure, transcript_append

    session, _ = session_ensure(key=MAIN, agent_id="main")
    for n in range(count):
        transcript_append(session=session, role="user" if n % 2 == 0 else "assistant", content=f"history line {n}")


def test_webchat_requires_a_staff_login(page, gateway):
    """An anonymous visitor is sent to the admin login page."""
    page.goto(gateway.http_url + "/")
    expect(page).to_have_url(f"{gateway.http_url}/admin/login/?next=/")


def test_chat_streams_the_reply_and_shows_busy_then_idle(hub: Hub):
    """The reply grows in a streaming bubble while the session is busy, then becomes the
    transcript message once; the turn ends and the session is idle again."""
    hub.open()
    expect(hub.page.locator("#session-state")).to_have_attribute("data-state", "idle")
    hub.send("tell me something slow")
    expect(hub.stream).to_contain_text("Here is a slow")
    expect(hub.page.locator("#session-state")).to_have_attribute("data-state", "busy")
    partial = hub.stream.inner_text()
    assert "THE-END" not in partial
    expect(hub.assistant("THE-END")).to_have_count(1)
    expect(hub.stream).to_have_count(0)
    expect(hub.page.locator("#turn-state")).to_have_text("Turn ended")
    expect(hub.page.locator("#session-state")).to_have_attribute("data-state", "idle")
    expect(hub.page.locator("#messages li.msg-user[data-id] .text")).to_have_text(["tell me something slow"])
    assert [e.role for e in current_transcript()] == ["user", "assistant"]
    assert current_transcript()[-1].text == SLOW_REPLY


def test_stop_aborts_a_slow_reply(hub: Hub):
    """Stop (chat.abort) ends the turn as aborted; the partial text is kept, marked aborted."""
    hub.open()
    hub.send("tell me a very long story")
    expect(hub.stream).to_contain_text("word3")
    hub.page.click("#stop")
    expect(hub.page.locator("#turn-state")).to_have_text("Turn ended: aborted")
    expect(hub.page.locator("#messages li.msg-assistant .tag")).to_have_text("aborted")
    expect(hub.page.locator("#session-state")).to_have_attribute("data-state", "idle")
    expect(hub.page.locator("#stop")).to_be_hidden()
    run = db(Run.objects.get, session__key=MAIN)
    assert run.status == Run.Status.ABORTED
    assert "word399" not in current_transcript()[-1].text


def test_reconnect_mid_stream_loses_and_duplicates_nothing(hub: Hub):
    """The socket drops after the first delta and stays down until the turn is over (and a
    message is typed meanwhile); on reconnect the page resumes from its last sessionSeq:
    every transcript message shows exactly once, the missed final included."""
    hub.open()
    hub.send("tell me something slow")
    expect(hub.stream).to_contain_text("Here is")
    hub.drop_connection(backoff_step=4)  # reconnect after ~4 s: the stream ends while offline
    expect(hub.page.locator("#conn-state")).to_have_attribute("data-state", "reconnecting")
    hub.send("hello while offline")
    expect(hub.page.locator("#conn-state")).to_have_attribute("data-state", "connected")
    expect(hub.assistant("THE-END")).to_have_count(1)
    expect(hub.assistant("You said: hello while offline")).to_have_count(1)
    expect(hub.page.locator("#messages li.pending")).to_have_count(0)
    entries = current_transcript()
    expect(hub.messages).to_have_count(len(entries))
    assert hub.rendered_ids() == [e.message_id for e in entries]


def test_a_refused_reconnect_asks_to_log_in_again(hub: Hub):
    """Without the admin session (logged out elsewhere) the reconnect is refused: the page
    stops retrying and offers the login link instead of looping."""
    hub.open()
    hub.page.context.clear_cookies()
    hub.drop_connection()
    expect(hub.page.locator("#conn-state")).to_have_attribute("data-state", "refused")
    note = hub.page.locator("#messages li.note.error")
    expect(note.locator(".code")).to_have_text("INVALID_REQUEST/AUTH_TOKEN_MISMATCH")
    link = note.get_by_role("link", name="Log in again")
    expect(link).to_have_attribute("href", re.compile(r"^/admin/login/\?next=%2F%3Fsession%3D"))
    hub.page.wait_for_timeout(1500)
    expect(hub.page.locator("#conn-state")).to_have_attribute("data-state", "refused")


def test_history_loads_on_open_and_older_pages_on_scroll_up(hub: Hub):
    """130 stored messages: the newest 50 on load, the rest as the reader scrolls up, in
    order and without duplicates."""
    db(fill_history, 130)
    hub.open()
    expect(hub.messages).to_have_count(50)
    expect(hub.messages.last).to_contain_text("history line 129")
    for expected in (100, 130):
        hub.page.locator("#transcript").evaluate("el => el.scrollTo(0, 0)")
        expect(hub.messages).to_have_count(expected)
    expect(hub.page.locator("#history-sentinel")).to_have_text("Start of the conversation")
    assert hub.rendered_ids() == [e.message_id for e in current_transcript()]


def test_slash_commands_autocomplete_and_errors_show_their_code(hub: Hub):
    """Typing / lists the commands; Tab completes; /status is answered by the gateway; a bad
    /queue shows its error code inline; /new starts a fresh transcript."""
    hub.open()
    hub.page.fill("#input", "/sub")
    suggestions = hub.page.locator("#suggestions li")
    expect(suggestions).to_have_count(4)
    expect(suggestions.first).to_contain_text("/subagents list")
    hub.page.press("#input", "ArrowDown")
    hub.page.press("#input", "Tab")
    expect(hub.page.locator("#input")).to_have_value("/subagents kill ")
    hub.page.fill("#input", "/acp d")
    expect(suggestions).to_have_count(3)
    hub.send("/status")
    expect(hub.assistant("Session: agent:main:main")).to_have_count(1)
    expect(hub.page.locator("#messages li.msg-user.command")).to_contain_text("/status")
    hub.send("/queue sideways")
    error = hub.page.locator("#messages li.note.error")
    expect(error).to_contain_text("unknown queue mode: sideways")
    expect(error.locator(".code")).to_have_text("INVALID_REQUEST")
    hub.send("/new")
    expect(hub.assistant("New session started.")).to_have_count(1)
    expect(hub.messages).to_have_count(1)


def test_phone_sized_screen(browser, gateway):
    """At 390×844 the page fits the width, chats, and the workers panel slides over."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                  reduced_motion="reduce")
    try:
        tab = context.new_page()
        hub = Hub(tab, gateway).open()
        hub.send("hello from a phone")
        expect(hub.assistant("You said: hello from a phone")).to_have_count(1)
        assert tab.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(tab, "hub-phone")
        tab.click("#panel-toggle")
        expect(tab.locator("#workers")).to_be_in_viewport()
        screenshot(tab, "hub-phone-workers")
        tab.click("#panel-close")
        expect(tab.locator("#workers")).not_to_be_in_viewport()
    finally:
        context.close()


def test_a_non_staff_user_is_not_let_in(page, gateway):
    """A logged-in user without staff status gets the login page, not the hub."""
    from django.contrib.auth import get_user_model

    db(get_user_model().objects.create_user, "visitor", "v@example.com", "visitor-pass-1")
    page.goto(f"{gateway.http_url}/admin/login/?next=/")
    page.fill("#id_username", "visitor")
    page.fill("#id_password", "visitor-pass-1")
    page.click("input[type=submit]")
    expect(page.locator("#webchat")).to_have_count(0)

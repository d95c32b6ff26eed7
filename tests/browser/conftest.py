"""Browser tests: Debian's Chromium driven by Playwright (sync API) against a real
``manage.py gateway`` on the pytest test database, logged in as a staff operator.

Every Playwright wait is bounded (15 s). Screenshots land in ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import json

import pytest

from .support import CHROMIUM, CHROMIUM_ARGS, CONFIG, PASSWORD, RULES, USERNAME, WAIT_MS, Hub


@pytest.fixture
def browser(gateway):
    """A headless Debian Chromium. Started after the database fixtures (through ``gateway``)
    and stopped before their teardown: the sync API runs an event loop in this thread, in
    which the ORM refuses to work, so tests reach the database through ``support.db``."""
    if not CHROMIUM.exists():
        pytest.skip(f"Debian Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=WAIT_MS)
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def operator(transactional_db):
    """A staff superuser, committed before the gateway starts (it shares the database)."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_superuser(USERNAME, "operator@example.com", PASSWORD)


@pytest.fixture
def gateway(gateway_factory, operator, tmp_path):
    """A running gateway (web + engine) whose offline model follows :data:`RULES`."""
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"rules": RULES}))
    env = {"OPENCLAW_OFFLINE_RULES": str(rules), "OPENCLAW_ENGINE_POLL_S": "0.2",
           "OFFLINE_ACP_STATE_DIR": str(tmp_path / "offline-acp")}  # fmt: skip
    return gateway_factory(config=CONFIG, args=("--role", "web,engine"), env=env)


@pytest.fixture
def page(browser, gateway):
    """A fresh browser context (its own cookies) at desktop size; console errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, reduced_motion="reduce")
    context.set_default_timeout(WAIT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not errors, errors


@pytest.fixture
def hub(page, gateway) -> Hub:
    return Hub(page, gateway)

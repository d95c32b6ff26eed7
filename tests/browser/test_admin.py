"""The operator console in a real browser: each admin action once (session wake and reset,
run abort, delivery retry, sub-agent kill, cron run now; delegate close is in
test_workers.py) and the dashboard's counts and links."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from cron_app.models import CronRun
from sessions_app.dashboard import dashboard_counts
from sessions_app.models import Delivery, SubagentRun, SystemEvent

from .support import Hub, db, login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.live, pytest.mark.django_db(transaction=True)]

MAIN = "agent:main:main"


def admin_action(page, url: str, row_text: str, action: str) -> None:
    """Tick the changelist row containing ``row_text`` and run ``action`` on it."""
    page.goto(url)
    page.locator("#result_list tbody tr", has_text=row_text).first.locator("input[name=_selected_action]").check()
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")


def success(page, text: str) -> None:
    expect(page.locator("ul.messagelist li.success", has_text=text)).to_be_visible()


def failed_delivery(n: int) -> Delivery:
    return Delivery.objects.create(
        idempotency_key=f"test:failed:{n}", kind=Delivery.Kind.SEND, source_session_key=MAIN,
        target_session_key="agent:main:dashboard:inbox", payload={"text": f"lost message {n}"},
        state=Delivery.State.FAILED, attempts=5, last_error="target unreachable",
    )  # fmt: skip


def cron_job():
    from cron_app.services.jobs import cron_job_add

    return cron_job_add(data={"name": "nightly report", "schedule": {"kind": "every", "everyMs": 3_600_000},
                              "payload": {"kind": "systemEvent", "text": "cron says hi"}})  # fmt: skip


def test_admin_actions_each_once(hub: Hub):
    """Wake, run abort, session reset, delivery retry, sub-agent kill and cron run now, each
    through its admin action, with the effect visible in the rows and in the hub."""
    base = hub.gateway.http_url
    hub.open()
    hub.send("hello admin")
    expect(hub.assistant("You said: hello admin")).to_have_count(1)
    admin = hub.page.context.new_page()

    admin_action(admin, f"{base}/admin/sessions_app/session/", MAIN, "wake_sessions")
    admin.fill("textarea[name=text]", "deploy finished")
    admin.click("input[name=apply]")
    success(admin, "Woke 1 row(s).")
    assert db(SystemEvent.objects.filter(session_key=MAIN, text="deploy finished").exists)

    hub.send("tell me a very long story")
    expect(hub.stream).to_contain_text("word2")
    admin_action(admin, f"{base}/admin/sessions_app/run/?status__exact=running", "agent:main:main", "abort_runs")
    success(admin, "Abort requested for 1 row(s).")
    expect(hub.page.locator("#turn-state")).to_have_text("Turn ended: aborted")

    expect(hub.page.locator("#session-state")).to_have_attribute("data-state", "idle")
    admin_action(admin, f"{base}/admin/sessions_app/session/", MAIN, "reset_sessions")
    success(admin, "Reset 1 row(s).")
    expect(hub.messages).to_have_count(0)

    delivery = db(failed_delivery, 1)
    admin_action(admin, f"{base}/admin/sessions_app/delivery/?state__exact=failed", delivery.delivery_id,
                 "retry_deliveries")  # fmt: skip
    success(admin, "Queued for retry 1 row(s).")
    assert db(lambda: Delivery.objects.get(pk=delivery.pk).state) != Delivery.State.FAILED

    hub.send("please spawn sleepy")
    expect(hub.worker("sleepy").locator(".chip")).to_have_text("running")
    admin_action(admin, f"{base}/admin/sessions_app/subagentrun/", "sleepy", "kill_subagents")
    success(admin, "Killed sleepy.")
    expect(hub.worker("sleepy").locator(".chip")).to_have_text("killed")
    assert db(lambda: SubagentRun.objects.get(label="sleepy").status) == SubagentRun.Status.KILLED

    job = db(cron_job)
    admin_action(admin, f"{base}/admin/cron_app/cronjob/", "nightly report", "run_now")
    success(admin, "started.")
    assert db(CronRun.objects.filter(job_uid=job.job_id, manual=True).exists)
    admin.close()


def test_dashboard_counts_link_to_the_filtered_lists(page, gateway):
    """The dashboard shows the selector's counts; each links to the changelist of those rows."""
    for n in range(2):
        db(failed_delivery, n)
    login(page, gateway, "/admin/dashboard/")
    cards = page.locator("[data-testid=dashboard] li")
    expect(cards).to_have_count(6)
    expected = {c.key: c.count for c in db(dashboard_counts)}
    for key in ("runs-active", "runs-queued", "deliveries-failed", "delegates-live"):
        expect(page.locator(f"[data-testid=count-{key}]")).to_have_text(str(expected[key]))
    assert expected["deliveries-failed"] == 2
    expect(page.locator("li.oc-alert")).to_have_count(1)
    screenshot(page, "admin-dashboard")

    page.click("[data-key=deliveries-failed] a")
    expect(page).to_have_url(f"{gateway.http_url}/admin/sessions_app/delivery/?state__exact=failed")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    page.goto(f"{gateway.http_url}/admin/")
    expect(page.locator("[data-testid=count-deliveries-failed]")).to_have_text("2")
    screenshot(page, "admin-index", full_page=True)
    for key in ("runs-active", "delegates-live", "heartbeats-due"):
        page.goto(f"{gateway.http_url}/admin/dashboard/")
        page.click(f"[data-key={key}] a")
        expect(page.locator("#changelist")).to_be_visible()

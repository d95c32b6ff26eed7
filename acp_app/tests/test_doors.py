"""Every door onto hub-delegated workers calls the same services: RPC ``acp.delegate.*``,
REST ``/api/v1/delegates``, ``manage.py acp_delegate``, the ``/acp delegate`` slash
command, the admin Delegates page, ``sessions_spawn({runtime: "acp"})`` and
``sessions_list({delegated: true})``. No harness runs here (closing finds no live
runtime in this process)."""

from __future__ import annotations

import asyncio
import json
from io import StringIO

import pytest
from django.contrib import messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from acp_app.models import AcpSession
from acp_app.services import acp_spawn
from openclaw_site.errors import GatewayError
from sessions_app.models import Run, TranscriptEntry
from sessions_app.rpc import READ, RpcContext, call_sync
from sessions_app.services.chat import chat_send
from sessions_app.tools import ToolContext, invoke_tool

from .support import OTHER_OWNER, OWNER

pytestmark = pytest.mark.django_db
TOKEN = "rest-test-token"


@pytest.fixture(autouse=True)
def state_dir(settings, tmp_path):
    settings.OPENCLAW_STATE_DIR = tmp_path


def spawn(label: str | None = "w1", owner: str = OWNER) -> dict:
    result = acp_spawn(requester_session_key=owner, task="work", agent_id="offline", delegate=True, label=label)
    assert result["status"] == "accepted", result
    return result


def rpc(method: str, params: dict, scopes=frozenset({"operator.admin"})):
    return call_sync(RpcContext(scopes=scopes), method, params)


# --- RPC ------------------------------------------------------------------------------------


def test_rpc_list_status_close_by_owner_and_by_key():
    mine = spawn()["childSessionKey"]
    theirs = spawn(owner=OTHER_OWNER)["childSessionKey"]
    owned = rpc("acp.delegate.list", {"sessionKey": "main"})
    assert owned["owner"] == OWNER and [row["sessionKey"] for row in owned["delegates"]] == [mine]
    row = owned["delegates"][0]
    assert {"label", "harness", "state", "lastActivityAt", "idleExpiresAt", "maxAgeExpiresAt"} <= set(row)
    assert {r["sessionKey"] for r in rpc("acp.delegate.list", {})["delegates"]} == {mine, theirs}
    assert rpc("acp.delegate.status", {"sessionKey": OWNER, "label": "w1"})["delegate"]["sessionKey"] == mine
    assert rpc("acp.delegate.status", {"key": theirs})["delegate"]["owner"] == OTHER_OWNER
    with pytest.raises(GatewayError) as caught:  # an owner cannot reach another owner's worker by key
        rpc("acp.delegate.status", {"sessionKey": OWNER, "key": theirs})
    assert caught.value.detail_code == "DELEGATE_NOT_FOUND"
    closed = rpc("acp.delegate.close", {"sessionKey": OWNER, "label": "w1"})
    assert closed["ok"] and closed["sessionKey"] == mine and closed["runtimeNotice"].startswith("no live runtime")
    assert rpc("acp.delegate.list", {"sessionKey": OWNER})["delegates"] == []


def test_rpc_errors_and_scopes():
    spawn()
    with pytest.raises(GatewayError) as caught:
        rpc("acp.delegate.status", {"sessionKey": OWNER, "label": "nope"})
    assert caught.value.message == 'No hub-delegated session with label "nope" for this owner.'
    with pytest.raises(GatewayError, match="invalid acp.delegate.close params"):
        rpc("acp.delegate.close", {"label": "w1"})
    with pytest.raises(GatewayError) as caught:
        rpc("acp.delegate.close", {"sessionKey": OWNER, "label": "w1"}, scopes=frozenset({READ}))
    assert caught.value.detail_code == "MISSING_SCOPE"


# --- REST -----------------------------------------------------------------------------------


@pytest.fixture
def api(gateway_config) -> APIClient:
    gateway_config({"gateway": {"auth": {"mode": "token", "token": TOKEN}}})
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    return client


def test_rest_list_status_close_and_sweep(api):
    key = spawn()["childSessionKey"]
    listed = api.get("/api/v1/delegates", {"sessionKey": OWNER})
    assert listed.status_code == 200 and listed.json()["delegates"][0]["sessionKey"] == key
    status = api.get("/api/v1/delegates/status", {"sessionKey": OWNER, "label": "w1"})
    assert status.status_code == 200 and status.json()["delegate"]["label"] == "w1"
    missing = api.get("/api/v1/delegates/status", {"sessionKey": OWNER, "label": "zz"})
    assert missing.status_code == 404 and missing.json()["error"]["details"]["code"] == "DELEGATE_NOT_FOUND"
    closed = api.post("/api/v1/delegates/close", {"key": key}, format="json")
    assert closed.status_code == 200 and closed.json()["label"] == "w1"
    assert api.post("/api/v1/delegates/sweep").json() == {"closed": [], "failed": []}
    assert APIClient().get("/api/v1/delegates").status_code == 401


# --- manage.py acp_delegate -----------------------------------------------------------------


def command(*args: str) -> str:
    out = StringIO()
    call_command("acp_delegate", *args, stdout=out)
    return out.getvalue()


def test_management_command_list_status_close():
    key = spawn()["childSessionKey"]
    assert f"w1 (offline, idle) -> {key} owner={OWNER}" in command("list")
    assert json.loads(command("list", "--owner", OWNER, "--json"))["count"] == 1
    assert f"Key: {key}" in command("status", "w1", "--owner", OWNER)
    assert f'Closed hub-delegated session "w1" ({key})' in command("close", "--key", key)
    assert command("list") == "(no hub-delegated workers)\n"
    with pytest.raises(CommandError, match="No hub-delegated session"):
        command("status", "w1", "--owner", OWNER)


# --- /acp delegate --------------------------------------------------------------------------


def slash(text: str, n: list[int] = [0]) -> str:  # noqa: B006 - a counter for idempotency keys
    n[0] += 1
    result = chat_send(session_key=OWNER, message=text, idempotency_key=f"cmd-{n[0]}")
    return result.run.output["text"]


def test_slash_commands_in_the_owners_chat():
    assert slash("/acp delegate list") == "ACP hub-delegated sessions:\n-----\n(none)"
    key = spawn()["childSessionKey"]
    spawn(label="theirs", owner=OTHER_OWNER)
    listing = slash("/acp delegate list")
    assert listing.startswith("ACP hub-delegated sessions:\n-----\n- w1 (offline, idle) -> " + key)
    assert "idle-expires:" in listing and "max-age-expires:" in listing and "theirs" not in listing
    status = slash("/acp delegate status w1")
    assert f"Key: {key}" in status and f"Owner: {OWNER}" in status and "sessions_send(label=...)" in status
    assert slash("/acp delegate status theirs") == '⚠️ No hub-delegated session with label "theirs" for this owner.'
    closed = slash("/acp delegate close w1")
    assert closed.startswith(f'✅ Closed hub-delegated session "w1" ({key}) (no live runtime') and "Removed 0 binding(s)." in closed
    assert slash("/acp delegate list").endswith("(none)")
    assert slash("/acp delegate") == "Usage: /acp delegate list | /acp delegate close <label> | /acp delegate status <label>"
    replies = TranscriptEntry.objects.filter(session__key=OWNER, role="assistant").count()
    assert replies == 7 and not Run.objects.filter(session__key=OWNER, status="queued").exists()


# --- admin ----------------------------------------------------------------------------------


@pytest.fixture
def admin_client() -> Client:
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456")
    client = Client()
    client.force_login(user)
    return client


def reported(response) -> list[tuple[int, str]]:
    return [(m.level, str(m)) for m in get_messages(response.wsgi_request)]


def test_admin_delegates_page_lists_across_owners_and_closes(admin_client):
    one = spawn()["childSessionKey"]
    two = spawn(label="w2", owner=OTHER_OWNER)["childSessionKey"]
    page = admin_client.get("/admin/acp_app/delegate/")
    assert page.status_code == 200 and one in page.content.decode() and two in page.content.decode()
    pk = AcpSession.objects.get(session__key=one).pk
    detail = admin_client.get(f"/admin/acp_app/delegate/{pk}/change/")
    assert detail.status_code == 200 and "Close delegate" in detail.content.decode() and "Idle expires" in detail.content.decode()
    assert admin_client.get(f"/admin/acp_app/delegate/{pk}/close/").status_code == 405
    response = admin_client.post(f"/admin/acp_app/delegate/{pk}/close/", follow=True)
    assert any(level == messages.SUCCESS and '"w1"' in text for level, text in reported(response))
    other = AcpSession.objects.get(session__key=two).pk
    response = admin_client.post("/admin/acp_app/delegate/", {"action": "close_delegates", ACTION_CHECKBOX_NAME: [other]},
                                 follow=True)  # fmt: skip
    assert any("Closed 1 row(s)." in text for _, text in reported(response))
    assert not AcpSession.objects.exclude(state="closed").exists()
    closed_page = admin_client.get("/admin/acp_app/delegate/?status=closed").content.decode()
    assert one in closed_page and two in closed_page
    assert one not in admin_client.get("/admin/acp_app/delegate/").content.decode()


# --- sessions_spawn / sessions_list tools ---------------------------------------------------


def tool(name: str, args: dict, session_key: str = OWNER) -> dict:
    return asyncio.run(invoke_tool(ToolContext(session_key=session_key, agent_id="main", run_id=None), name, args))


@pytest.mark.django_db(transaction=True)
def test_sessions_spawn_tool_runtime_acp_and_sessions_list_delegated():
    spawned = tool("sessions_spawn", {"runtime": "acp", "delegate": True, "agentId": "offline", "task": "go",
                                      "label": "w1"})  # fmt: skip
    assert spawned["status"] == "accepted" and spawned["label"] == "w1" and spawned["runtime"] == "acp"
    refused = tool("sessions_spawn", {"runtime": "acp", "delegate": True, "thread": True, "agentId": "offline", "task": "x"})
    assert refused["status"] == "error" and refused["errorCode"] == "thread_binding_invalid"
    tool("sessions_spawn", {"runtime": "acp", "delegate": True, "agentId": "offline", "task": "y", "label": "theirs"},
         session_key=OTHER_OWNER)  # fmt: skip
    listed = tool("sessions_list", {"delegated": True})
    assert [row["sessionKey"] for row in listed["sessions"]] == [spawned["childSessionKey"]]
    delegate = listed["sessions"][0]["delegate"]
    assert delegate["label"] == "w1" and delegate["harness"] == "offline" and delegate["state"] == "idle"
    assert delegate["lastActivityAt"] and delegate["expiresAt"] == delegate["idleExpiresAt"]

"""The REST API under /api/v1/: auth, every endpoint, and the gateway error envelope.

Each endpoint calls the same RPC method the WebSocket uses, so these tests check the
door (routing, query coercion, status codes, envelope) and that rows really change.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from sessions_app.models import Session, TranscriptEntry

TOKEN = "rest-test-token"
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def token_config(gateway_config, settings, tmp_path):
    """Token auth on, and a private state dir (deleted transcripts are archived there)."""
    settings.OPENCLAW_STATE_DIR = tmp_path
    gateway_config({"gateway": {"auth": {"mode": "token", "token": TOKEN}}})


@pytest.fixture
def api() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    return client


def create(api: APIClient, **body) -> dict:
    response = api.post("/api/v1/sessions", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return body["error"]


# --- auth ------------------------------------------------------------------------------


def test_api_unauthenticated_is_401_in_the_envelope():
    """No credentials: 401, the gateway envelope, and a Bearer challenge."""
    response = APIClient().get("/api/v1/sessions")
    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "INVALID_REQUEST"
    assert error["details"]["code"] == "UNAUTHENTICATED"
    assert response["WWW-Authenticate"] == "Bearer"


def test_api_wrong_token_is_401_token_mismatch():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-the-token")
    response = client.get("/api/v1/health")
    assert response.status_code == 401
    assert error_of(response)["details"]["code"] == "AUTH_TOKEN_MISMATCH"


def test_api_token_auth_passes(api):
    response = api.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["ok"] is True


def test_api_session_auth_of_a_staff_user_passes():
    """A logged-in operator (Django session) uses the API without the token."""
    user = get_user_model().objects.create_user("op", password="pw-123456", is_staff=True)
    client = APIClient()
    client.force_login(user)
    response = client.get("/api/v1/agents")
    assert response.status_code == 200
    assert response.json()["defaultId"] == "main"


def test_api_session_auth_of_a_non_staff_user_is_forbidden():
    user = get_user_model().objects.create_user("guest", password="pw-123456")
    client = APIClient()
    client.force_login(user)
    response = client.get("/api/v1/sessions")
    assert response.status_code == 403
    assert error_of(response)["code"] == "FORBIDDEN"


def test_api_session_auth_enforces_csrf_on_writes():
    """Cookie auth is CSRF-protected; the bearer token is not a cookie and needs no CSRF."""
    user = get_user_model().objects.create_user("op2", password="pw-123456", is_staff=True)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/api/v1/sessions", {"label": "x"}, format="json")
    assert response.status_code == 403
    assert error_of(response)["code"] == "FORBIDDEN"
    assert not Session.objects.filter(label="x").exists()


# --- gateway ---------------------------------------------------------------------------


def test_api_health_reports_agents(api):
    body = api.get("/api/v1/health").json()
    assert body["defaultAgentId"] == "main"
    assert [agent["agentId"] for agent in body["agents"]] == ["main"]


def test_api_agents_lists_the_configured_agents(api):
    body = api.get("/api/v1/agents").json()
    assert body["defaultId"] == "main"
    assert [agent["id"] for agent in body["agents"]] == ["main"]


# --- sessions --------------------------------------------------------------------------


def test_api_create_returns_201_and_writes_the_row(api):
    body = create(api, label="alpha")
    assert body["ok"] is True and body["runStarted"] is False
    session = Session.objects.get(key=body["key"])
    assert session.label == "alpha"
    assert body["key"].startswith("agent:main:dashboard:")
    assert body["sessionId"] == session.session_id


def test_api_create_with_a_foreign_agent_key_is_refused(api):
    response = api.post("/api/v1/sessions", {"key": "agent:main:x", "agentId": "ops"}, format="json")
    assert response.status_code == 400
    assert error_of(response)["code"] == "INVALID_REQUEST"
    assert not Session.objects.filter(key="agent:main:x").exists()


def test_api_create_with_unknown_params_answers_the_rpc_message(api):
    """Bodies are validated by the RPC schema itself, so the message is the gateway's."""
    response = api.post("/api/v1/sessions", {"bogus": 1}, format="json")
    assert response.status_code == 400
    assert error_of(response)["message"].startswith("invalid sessions.create params:")


def test_api_body_must_be_an_object(api):
    response = api.post("/api/v1/sessions", [1, 2], format="json")
    assert response.status_code == 400
    assert error_of(response)["details"]["code"] == "INVALID_BODY"


def test_api_list_filters_by_query_params(api):
    create(api, label="alpha")
    create(api, label="beta")
    body = api.get("/api/v1/sessions", {"label": "beta"}).json()
    assert [row["label"] for row in body["sessions"]] == ["beta"]
    assert body["count"] == 1
    assert len(api.get("/api/v1/sessions", {"limit": "1"}).json()["sessions"]) == 1


def test_api_list_bad_query_is_400_invalid_params(api):
    response = api.get("/api/v1/sessions", {"limit": "many"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "INVALID_REQUEST"
    assert error["details"]["code"] == "INVALID_PARAMS"
    assert "limit" in error["details"]["fields"]


def test_api_get_returns_the_row_and_messages(api):
    key = create(api, label="alpha")["key"]
    api.post(f"/api/v1/sessions/{key}/inject", {"message": "hello"}, format="json")
    body = api.get(f"/api/v1/sessions/{key}").json()
    assert body["key"] == key
    assert body["session"]["label"] == "alpha"
    assert [m["content"][0]["text"] for m in body["messages"]] == ["hello"]


def test_api_get_missing_session_is_404(api):
    response = api.get("/api/v1/sessions/agent:main:nope")
    assert response.status_code == 404
    assert error_of(response)["details"]["code"] == "SESSION_NOT_FOUND"


def test_api_url_encoded_key_resolves_the_same(api):
    key = create(api)["key"]
    response = api.get(f"/api/v1/sessions/{quote(key, safe='')}")
    assert response.status_code == 200
    assert response.json()["key"] == key


def test_api_patch_sets_and_clears_fields(api):
    """Absent keeps, null clears, a value sets: the patch body reaches the RPC unchanged."""
    key = create(api, label="alpha")["key"]
    response = api.patch(f"/api/v1/sessions/{key}", {"sendPolicy": "deny"}, format="json")
    assert response.status_code == 200
    assert response.json()["entry"]["sendPolicy"] == "deny"
    session = Session.objects.get(key=key)
    assert (session.label, session.send_policy) == ("alpha", "deny")
    api.patch(f"/api/v1/sessions/{key}", {"label": None}, format="json")
    session.refresh_from_db()
    assert (session.label, session.send_policy) == (None, "deny")


def test_api_patch_label_in_use_is_409(api):
    create(api, label="taken")
    key = create(api)["key"]
    response = api.patch(f"/api/v1/sessions/{key}", {"label": "taken"}, format="json")
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "INVALID_REQUEST"
    assert error["details"]["code"] == "LABEL_IN_USE"
    assert error["message"] == "label already in use: taken"
    assert Session.objects.get(key=key).label is None


def test_api_patch_invalid_value_is_400_with_rpc_message(api):
    key = create(api)["key"]
    response = api.patch(f"/api/v1/sessions/{key}", {"sendPolicy": "maybe"}, format="json")
    assert response.status_code == 400
    assert error_of(response)["message"].startswith("invalid sessions.patch params:")


def test_api_reset_rotates_the_session_id_and_keeps_the_label(api):
    created = create(api, label="alpha")
    response = api.post(f"/api/v1/sessions/{created['key']}/reset", {}, format="json")
    assert response.status_code == 200
    session = Session.objects.get(key=created["key"])
    assert session.session_id != created["sessionId"]
    assert session.label == "alpha"
    assert response.json()["entry"]["sessionId"] == session.session_id


def test_api_delete_removes_the_row(api):
    key = create(api)["key"]
    response = api.delete(f"/api/v1/sessions/{key}")
    assert response.status_code == 200
    assert response.json()["deleted"] is True
    assert not Session.objects.filter(key=key).exists()


def test_api_delete_main_session_is_refused(api):
    api.post("/api/v1/sessions/agent:main:main/inject", {"message": "x", "createIfMissing": True}, format="json")
    response = api.delete("/api/v1/sessions/agent:main:main")
    assert response.status_code == 400
    assert error_of(response)["details"]["code"] == "MAIN_SESSION_DELETE"
    assert Session.objects.filter(key="agent:main:main").exists()


def test_api_resolve_by_label(api):
    key = create(api, label="finder")["key"]
    response = api.get("/api/v1/sessions/resolve", {"label": "finder"})
    assert response.status_code == 200
    assert response.json() == {"ok": True, "key": key}


def test_api_resolve_unknown_label_is_404(api):
    response = api.get("/api/v1/sessions/resolve", {"label": "ghost"})
    assert response.status_code == 404
    assert error_of(response)["message"] == "No session found with label: ghost"


# --- transcripts -----------------------------------------------------------------------


def test_api_inject_appends_an_assistant_note(api):
    key = create(api)["key"]
    response = api.post(f"/api/v1/sessions/{key}/inject", {"message": "note", "label": "ops"}, format="json")
    assert response.status_code == 200
    entry = TranscriptEntry.objects.get(message_id=response.json()["messageId"])
    assert entry.role == "assistant"
    assert entry.stop_reason == "injected"
    assert "note" in entry.text


def test_api_inject_respects_the_send_policy(api):
    key = create(api)["key"]
    api.patch(f"/api/v1/sessions/{key}", {"sendPolicy": "deny"}, format="json")
    response = api.post(f"/api/v1/sessions/{key}/inject", {"message": "x"}, format="json")
    assert response.status_code == 400
    assert error_of(response)["message"] == "send blocked by session policy"
    assert not TranscriptEntry.objects.filter(session__key=key).exists()


def test_api_transcript_returns_the_history(api):
    key = create(api)["key"]
    for text in ("one", "two", "three"):
        api.post(f"/api/v1/sessions/{key}/inject", {"message": text}, format="json")
    body = api.get(f"/api/v1/sessions/{key}/transcript", {"limit": "2"}).json()
    assert body["sessionKey"] == key
    assert [m["content"][0]["text"] for m in body["messages"]] == ["two", "three"]
    assert body["hasMore"] is True


def test_api_suffix_routes_are_not_read_as_keys(api):
    """``…/transcript`` and ``…/reset`` reach their views, not ``sessions.get`` of a longer key."""
    key = create(api)["key"]
    assert "messages" in api.get(f"/api/v1/sessions/{key}/transcript").json()
    assert "sessionKey" in api.get(f"/api/v1/sessions/{key}/transcript").json()
    assert api.get(f"/api/v1/sessions/{key}/reset").status_code == 405

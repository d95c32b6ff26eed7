"""REST doors: POST /api/v1/wake, POST /api/v1/system-events, GET …/sessions/<key>/system-events."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from sessions_app.models import Run, SystemEvent

pytestmark = pytest.mark.django_db
TOKEN = {"gateway": {"auth": {"mode": "token", "token": "rest-token"}}}


@pytest.fixture
def api(gateway_config):
    gateway_config(TOKEN)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer rest-token")
    return client


def test_rest_wake_queues_and_wakes(api):
    response = api.post("/api/v1/wake", {"mode": "now", "text": "deploy done", "sessionKey": "agent:main:main"}, format="json")
    assert (response.status_code, response.json()) == (200, {"ok": True})
    assert SystemEvent.objects.get().text == "deploy done"
    assert Run.objects.get().kind == "heartbeat"


def test_rest_wake_errors_use_the_gateway_envelope(api):
    response = api.post("/api/v1/wake", {"mode": "later", "text": "x"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "INVALID_REQUEST",
        "message": "invalid wake params: at /mode: must be equal to constant; at /mode: must match a schema in anyOf",
    }
    response = api.post("/api/v1/wake", {"mode": "now", "text": "x", "sessionKey": "agent:main:subagent:a"}, format="json")
    assert response.json()["error"]["message"] == "wake sessionKey cannot target a subagent session"
    assert not SystemEvent.objects.exists()


def test_rest_wake_needs_the_token(gateway_config):
    gateway_config(TOKEN)
    response = APIClient().post("/api/v1/wake", {"mode": "now", "text": "x"}, format="json")
    assert response.status_code == 401 and response.json()["error"]["code"] == "INVALID_REQUEST"


def test_rest_system_events_post_and_list(api):
    response = api.post("/api/v1/system-events", {"text": "backup finished", "sessionKey": "work"}, format="json")
    assert response.json() == {"ok": True, "sessionKey": "agent:main:work"}
    assert not Run.objects.exists()
    listed = api.get("/api/v1/sessions/agent:main:work/system-events").json()
    assert listed["sessionKey"] == "agent:main:work"
    [event] = listed["events"]
    assert (event["text"], event["origin"], event["consumedAtMs"]) == ("backup finished", "system-event", None)
    assert api.get("/api/v1/sessions/work/system-events").json()["events"] == listed["events"]


def test_rest_system_events_empty_text(api):
    response = api.post("/api/v1/system-events", {"text": "  "}, format="json")
    assert response.status_code == 400 and response.json()["error"]["message"] == "text required"

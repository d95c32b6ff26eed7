"""REST doors of delivery: POST /api/v1/sessions/send and GET /api/v1/deliveries[/<id>]."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from sessions_app.models import Delivery, Run
from sessions_app.services.deliveries import delivery_mark_failed
from sessions_app.services.sessions import session_ensure

TOKEN = "rest-test-token"
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def token_config(gateway_config):
    gateway_config({
        "gateway": {"auth": {"mode": "token", "token": TOKEN}},
        "agents": {"list": [{"id": "main", "default": True}]},
        "tools": {"sessions": {"visibility": "tree"}},
    })  # fmt: skip
    session_ensure(key="agent:main:main")
    session_ensure(key="agent:main:peer")


@pytest.fixture
def api() -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    return client


def test_send_fire_and_forget_then_follow_the_delivery(api):
    response = api.post("/api/v1/sessions/send", {"sessionKey": "agent:main:peer", "message": "hello",
                                                 "timeoutSeconds": 0}, format="json")  # fmt: skip
    assert response.status_code == 202, response.json()
    result = response.json()
    assert (result["status"], result["delivery"]["status"]) == ("accepted", "sent")
    row = api.get(f"/api/v1/deliveries/{result['delivery']['id']}").json()
    assert (row["state"], row["targetSessionKey"], row["text"], row["attempts"]) == (
        "delivered", "agent:main:peer", "hello", 1)
    assert Run.objects.filter(session_key="agent:main:peer", status="queued").exists()


def test_send_as_a_session_is_guarded_by_visibility(api):
    response = api.post("/api/v1/sessions/send", {"sessionKey": "agent:main:peer", "message": "hi",
                                                 "requesterSessionKey": "main"}, format="json")  # fmt: skip
    assert response.status_code == 403
    assert "restricted to the current session tree" in response.json()["error"]["message"]
    assert not Delivery.objects.exists()


def test_send_with_bad_params_or_target(api):
    missing = api.post("/api/v1/sessions/send", {"sessionKey": "agent:main:peer"}, format="json")
    assert missing.status_code == 400
    assert missing.json()["error"]["message"].startswith("invalid sessions.sendTool params")
    nobody = api.post("/api/v1/sessions/send", {"label": "ghost", "message": "hi"}, format="json")
    assert (nobody.status_code, nobody.json()["error"]["message"]) == (400, "No session found with label: ghost")


def test_list_deliveries_by_state_and_session(api):
    for index in range(3):
        api.post("/api/v1/sessions/send", {"sessionKey": "agent:main:peer", "message": f"m{index}",
                                          "timeoutSeconds": 0}, format="json")  # fmt: skip
    first = Delivery.objects.order_by("created_at").first()
    delivery_mark_failed(delivery=first, reason="gone")
    failed = api.get("/api/v1/deliveries?state=failed").json()["deliveries"]
    assert [(d["id"], d["lastError"]) for d in failed] == [(first.delivery_id, "gone")]
    by_session = api.get("/api/v1/deliveries?session=agent:main:peer").json()["deliveries"]
    assert len(by_session) == 3
    retried = api.post(f"/api/v1/deliveries/{first.delivery_id}/retry").json()
    assert retried["state"] == "delivered"
    assert api.get("/api/v1/deliveries/nope").status_code == 404

"""``chat.inject`` and ``sessions.patch`` (through the RPC registry, as every door calls
them) respect the send policy and label ownership; a refusal writes nothing."""

from __future__ import annotations

import pytest

from acp_app import services as acp_services
from openclaw_site.errors import GatewayError
from sessions_app.models import Session, TranscriptEntry
from sessions_app.rpc import ADMIN, RpcContext, call_sync
from sessions_app.services.session_send import SendRequest, send_start
from sessions_app.services.sessions import session_ensure
from sessions_app.services.visibility import SessionForbiddenError

pytestmark = pytest.mark.django_db

OWNER = "agent:main:main"
OTHER_OWNER = "agent:main:dashboard:other"
ADMIN_CTX = RpcContext(scopes=frozenset({ADMIN}))


def rpc(method: str, params: dict):
    return call_sync(ADMIN_CTX, method, params)


def refused(method: str, params: dict) -> GatewayError:
    entries = TranscriptEntry.objects.count()
    with pytest.raises(GatewayError) as caught:
        rpc(method, params)
    assert TranscriptEntry.objects.count() == entries
    return caught.value


@pytest.fixture(autouse=True)
def state_dir(settings, tmp_path):
    settings.OPENCLAW_STATE_DIR = tmp_path


# --- send policy ------------------------------------------------------------------------------


def test_chat_inject_refused_when_the_session_policy_is_deny():
    rpc("sessions.patch", {"key": "agent:main:locked", "sendPolicy": "deny"})
    error = refused("chat.inject", {"sessionKey": "agent:main:locked", "message": "note"})
    assert error.message == "send blocked by session policy" and error.details["code"] == "SEND_BLOCKED"


def test_chat_inject_refused_by_a_config_deny_rule_and_allowed_by_a_session_override(gateway_config):
    gateway_config({"session": {"sendPolicy": {"default": "allow",
                                               "rules": [{"action": "deny", "match": {"keyPrefix": "agent:main:cron:"}}]}}})  # fmt: skip
    session_ensure(key="agent:main:cron:nightly")
    assert refused("chat.inject", {"sessionKey": "agent:main:cron:nightly", "message": "x"}).details["code"] == "SEND_BLOCKED"
    rpc("sessions.patch", {"key": "agent:main:cron:nightly", "sendPolicy": "allow"})
    assert rpc("chat.inject", {"sessionKey": "agent:main:cron:nightly", "message": "x"})["ok"] is True


def test_chat_inject_refused_under_a_default_deny_policy(gateway_config):
    gateway_config({"session": {"sendPolicy": {"default": "deny"}}})
    session_ensure(key="agent:main:quiet")
    refused("chat.inject", {"sessionKey": "agent:main:quiet", "message": "x"})
    refused("chat.inject", {"sessionKey": "agent:main:new-one", "message": "x", "createIfMissing": True})
    assert not Session.objects.filter(key="agent:main:new-one").exists()  # the refusal rolled the creation back


def test_sessions_patch_send_policy_values_are_checked():
    error = refused("sessions.patch", {"key": "agent:main:p", "sendPolicy": "maybe"})
    assert error.code == "INVALID_REQUEST"


# --- labels and lineage -----------------------------------------------------------------------------


def spawn_worker(owner: str, label: str) -> str:
    return acp_services.acp_spawn(requester_session_key=owner, task="t", agent_id="offline", delegate=True,
                                  label=label)["childSessionKey"]  # fmt: skip


def test_patch_cannot_reparent_a_worker_to_another_owner():
    worker = spawn_worker(OWNER, "w1")
    error = refused("sessions.patch", {"key": worker, "spawnedBy": OTHER_OWNER})
    assert "lineage mismatch" in error.message
    assert Session.objects.get(key=worker).spawned_by == OWNER


def test_patch_cannot_duplicate_a_sibling_workers_label():
    spawn_worker(OWNER, "w1")
    w2 = spawn_worker(OWNER, "w2")
    assert refused("sessions.patch", {"key": w2, "label": "w1"}).details["code"] == "LABEL_IN_USE"
    assert Session.objects.get(key=w2).label == "w2"


def test_a_label_taken_by_another_owner_or_a_plain_session_never_redirects_the_owner():
    """Another owner's worker and a plain session may carry the same label; the owner's
    label lookup still reaches its own worker, the other owner never does."""
    mine = spawn_worker(OWNER, "w1")
    theirs = spawn_worker(OTHER_OWNER, "w1")
    rpc("sessions.patch", {"key": "agent:main:dashboard:plain", "label": "w1"})
    assert send_start(request=SendRequest(message="hi", requester_key=OWNER, label="w1", timeout_s=0)).target_key == mine
    other = send_start(request=SendRequest(message="hi", requester_key=OTHER_OWNER, label="w1", timeout_s=0))
    assert other.target_key == theirs


def test_another_session_cannot_reach_a_worker_by_its_label():
    spawn_worker(OWNER, "only-mine")
    with pytest.raises(SessionForbiddenError):
        send_start(request=SendRequest(message="hi", requester_key=OTHER_OWNER, label="only-mine", timeout_s=0))


def test_subagent_lineage_is_fixed_once_set():
    rpc("sessions.patch", {"key": "agent:main:subagent:k1", "spawnedBy": OWNER})
    error = refused("sessions.patch", {"key": "agent:main:subagent:k1", "spawnedBy": OTHER_OWNER})
    assert error.message == "spawnedBy cannot be changed once set"
    refused("sessions.patch", {"key": "agent:main:subagent:k1", "spawnedBy": None})
    refused("sessions.patch", {"key": "agent:main:dashboard:x", "spawnedBy": OWNER})  # not a subagent key
    assert Session.objects.get(key="agent:main:subagent:k1").spawned_by == OWNER


def test_webchat_clients_cannot_patch_or_inject_around_the_policy():
    webchat = RpcContext(scopes=frozenset({ADMIN}), client={"id": "webchat-ui", "mode": "webchat"})
    with pytest.raises(GatewayError) as caught:
        call_sync(webchat, "sessions.patch", {"key": "agent:main:w", "sendPolicy": "allow"})
    assert caught.value.details["code"] == "WEBCHAT_FORBIDDEN"

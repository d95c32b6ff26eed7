"""ACP spawns and hub-delegated workers through their services, without harness processes:
spawn checks and errorCodes, per-owner labels (auto-label, suffixes, concurrency), lineage,
list/status, close ordering and its failure restore, and the idle/max-age sweeps under
frozen time."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
import time_machine
from django.db import connection

from acp_app import selectors, services
from acp_app.exceptions import DelegateCloseError, DelegateLineageError, DelegateNotFoundError
from acp_app.models import AcpSession
from openclaw_site.errors import GatewayError
from sessions_app.exceptions import InvalidSessionPatchError, LabelInUseError
from sessions_app.models import Run, Session, SubagentRun
from sessions_app.services.session_send import SendRequest, SendTargetError, send_start
from sessions_app.services.sessions import session_ensure, session_patch
from sessions_app.services.visibility import SessionForbiddenError

from .support import OTHER_OWNER, OWNER

pytestmark = pytest.mark.django_db
FROZEN = datetime(2026, 6, 5, 14, 30, 22, tzinfo=dt_timezone.utc)


@pytest.fixture(autouse=True)
def state_dir(settings, tmp_path):
    settings.OPENCLAW_STATE_DIR = tmp_path


def spawn(**kwargs) -> dict:
    args = {"requester_session_key": OWNER, "task": "do the thing", "agent_id": "offline", "delegate": True, **kwargs}
    return services.acp_spawn(**args)


def no_closer(*, session_key: str, reason: str) -> str:
    return "runtime closed"


# --- spawn checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "kwargs", "status", "error_code"),
    [
        ({"acp": {"enabled": False}}, {}, "forbidden", "acp_disabled"),
        ({}, {"requester_session_key": " "}, "error", "requester_session_required"),
        ({}, {"sandbox": "require"}, "forbidden", "runtime_policy"),
        ({}, {"sandboxed": True}, "forbidden", "runtime_policy"),
        ({}, {"thread": True}, "error", "thread_binding_invalid"),
        ({}, {"mode": "run"}, "error", "spawn_failed"),
        ({}, {"delegate": False, "mode": "session"}, "error", "thread_required"),
        ({}, {"delegate": False, "thread": True}, "error", "thread_required"),
        ({}, {"agent_id": None}, "error", "target_agent_required"),
        ({"acp": {"allowedAgents": ["codex"]}}, {}, "forbidden", "agent_forbidden"),
        ({}, {"agent_id": "nosuch"}, "error", "spawn_failed"),
        ({}, {"cwd": "/definitely/not/here"}, "error", "cwd_resolution_failed"),
        ({}, {"task": "  "}, "error", "spawn_failed"),
    ],
)
def test_acp_spawn_refusals_carry_openclaw_error_codes_and_write_nothing(gateway_config, config, kwargs, status, error_code):
    """Every refusal is {status, errorCode, error}; no session, ACP row or run is created."""
    gateway_config(config)
    result = spawn(**kwargs)
    assert (result["status"], result["errorCode"]) == (status, error_code), result
    assert result["error"]
    assert not Session.objects.filter(kind="acp").exists()
    assert not AcpSession.objects.exists() and not Run.objects.exists()


def test_acp_spawn_uses_default_agent_and_rejects_depth(gateway_config):
    """acp.defaultAgent names the harness; a requester at max spawn depth is subagent_policy."""
    gateway_config({"acp": {"defaultAgent": "offline"}})
    assert spawn(agent_id=None)["status"] == "accepted"
    deep = "agent:main:subagent:deep"
    session_ensure(key=deep, defaults={"spawn_depth": 1})
    result = spawn(requester_session_key=deep)
    assert (result["status"], result["errorCode"]) == ("forbidden", "subagent_policy")


def test_acp_spawn_delegate_creates_worker_row_and_first_run():
    """Key agent:<harness>:acp:<uuid>, owner metadata, lineage = owner, one acp run with the task."""
    result = spawn(label="w1")
    assert result["status"] == "accepted" and result["delegate"] is True and result["label"] == "w1"
    assert 'sessions_send(label="w1")' in result["note"]
    key = result["childSessionKey"]
    assert key.startswith("agent:offline:acp:")
    session = Session.objects.get(key=key)
    assert (session.kind, session.label, session.label_scope, session.spawned_by) == ("acp", "w1", OWNER, OWNER)
    acp = session.acp
    assert (acp.owner_session_key, acp.mode, acp.state, acp.harness_agent) == (OWNER, "persistent", "idle", "offline")
    assert acp.delegated_at is not None and acp.cwd
    run = Run.objects.get(run_id=result["runId"])
    assert (run.kind, run.status, run.input["message"], run.session_id) == ("acp", "queued", "do the thing", session.pk)
    assert not SubagentRun.objects.exists()


def test_acp_spawn_run_mode_is_oneshot_and_registered_for_announce(tmp_path):
    """mode=run: a oneshot ACP session whose run is a registry row (the announce pipeline)."""
    result = spawn(delegate=False, mode="run", label="once", cwd=str(tmp_path))
    assert result["status"] == "accepted" and result["mode"] == "run" and "delegate" not in result
    session = Session.objects.get(key=result["childSessionKey"])
    assert session.acp.mode == "oneshot" and session.acp.owner_session_key is None and session.label is None
    assert session.acp.cwd == str(tmp_path)
    row = SubagentRun.objects.get(run_id=result["runId"])
    assert (row.child_session_key, row.requester_session_key, row.label) == (session.key, OWNER, "once")


# --- labels ---------------------------------------------------------------------------------


def test_auto_label_is_utc_timestamp_with_conflict_suffixes():
    """No label → delegate-YYYYMMDD-HHMMSS (UTC); the same second gives -2, -3; another
    owner starts again at the bare label."""
    with time_machine.travel(FROZEN, tick=False):
        labels = [spawn()["label"] for _ in range(3)]
        other = spawn(requester_session_key=OTHER_OWNER)["label"]
    assert labels == ["delegate-20260605-143022", "delegate-20260605-143022-2", "delegate-20260605-143022-3"]
    assert other == "delegate-20260605-143022"


def test_auto_label_falls_back_to_milliseconds_after_99():
    base = "delegate-20260605-143022"
    now = FROZEN
    Session.objects.bulk_create([
        Session(key=f"agent:offline:acp:taken-{n}", agent_id="offline", label=label, label_scope=OWNER, updated_at=now)
        for n, label in enumerate([base, *(f"{base}-{i}" for i in range(2, 100))])
    ])  # fmt: skip
    with time_machine.travel(FROZEN, tick=False):
        assert spawn()["label"] == f"{base}-{int(FROZEN.timestamp() * 1000)}"


def test_explicit_label_is_unique_per_owner_across_harnesses(gateway_config):
    """A second worker of the same owner cannot take the label (whatever its harness); another
    owner may reuse it; a closed worker frees it."""
    gateway_config({"acp": {"agents": {"codex": {"command": "true"}}}})
    first = spawn(label="w1")
    again = spawn(label="w1", agent_id="codex")
    assert (again["status"], again["errorCode"]) == ("error", "spawn_failed") and "already used" in again["error"]
    assert spawn(label="w1", requester_session_key=OTHER_OWNER)["status"] == "accepted"
    services.delegate_close(session_key=first["childSessionKey"], runtime_closer=no_closer)
    assert spawn(label="w1")["status"] == "accepted"


def test_database_refuses_a_duplicate_delegate_label_for_one_owner():
    spawn(label="w1")
    with pytest.raises(Exception):
        Session.objects.create(key="agent:codex:acp:x", agent_id="codex", label="w1", label_scope=OWNER,
                               updated_at=FROZEN)  # fmt: skip


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("label", ["w1", None])
def test_concurrent_spawns_keep_labels_unique_per_owner(label):
    """Two spawns at once for one owner, in the same second: with the same explicit label
    exactly one wins; with auto-labels both win with distinct labels, in whichever order
    the database serialises them (a lost race ends at the unique constraint)."""
    barrier = threading.Barrier(2)
    results: list[dict] = []

    def worker():
        barrier.wait()
        try:
            results.append(spawn(label=label))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    with time_machine.travel(FROZEN, tick=False):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    statuses = sorted(r["status"] for r in results)
    labels = list(Session.objects.filter(label_scope=OWNER).values_list("label", flat=True))
    if label:
        assert statuses == ["accepted", "error"] and labels == ["w1"]
    else:
        assert statuses == ["accepted", "accepted"] and len(set(labels)) == 2


# --- lineage and sessions.patch -------------------------------------------------------------


def test_sessions_patch_cannot_reparent_or_duplicate_a_delegate_label():
    """spawnedBy of a worker stays its owner; a sibling's label is refused by the constraint;
    a plain session may carry the same label but the owner's label lookup still finds the worker."""
    w1 = spawn(label="w1")["childSessionKey"]
    w2 = spawn(label="w2")["childSessionKey"]
    with pytest.raises(InvalidSessionPatchError, match="lineage mismatch"):
        session_patch(key=w1, changes={"spawnedBy": OTHER_OWNER})
    with pytest.raises(LabelInUseError):
        session_patch(key=w2, changes={"label": "w1"})
    assert Session.objects.get(key=w2).label == "w2"
    session_patch(key="agent:main:dashboard:plain", changes={"label": "w1"})
    started = send_start(request=SendRequest(message="hi", requester_key=OWNER, label="w1", timeout_s=0))
    assert started.target_key == w1 and started.a2a_skipped


def test_drifted_lineage_authorises_nobody():
    key = spawn(label="w1")["childSessionKey"]
    Session.objects.filter(key=key).update(spawned_by=OTHER_OWNER)
    with pytest.raises(DelegateLineageError):
        selectors.delegate_get(owner_session_key=OWNER, label="w1")
    assert selectors.delegate_list_for_owner(owner_session_key=OWNER) == []


def test_another_owner_cannot_reach_the_label():
    spawn(label="w1")
    with pytest.raises(SessionForbiddenError, match="another session"):
        send_start(request=SendRequest(message="hi", requester_key=OTHER_OWNER, label="w1", timeout_s=0))
    with pytest.raises(DelegateNotFoundError):
        selectors.delegate_get(owner_session_key=OTHER_OWNER, label="w1")


def test_label_lookup_is_exact_and_case_sensitive():
    spawn(label="Worker")
    assert selectors.delegate_get(owner_session_key=OWNER, label=" Worker ").session.label == "Worker"
    with pytest.raises(DelegateNotFoundError):
        selectors.delegate_get(owner_session_key=OWNER, label="worker")


# --- list, status, close --------------------------------------------------------------------


def test_list_and_status_are_owner_scoped_with_expiry(gateway_config):
    gateway_config({"acp": {"delegate": {"idleHours": 2, "maxAgeHours": 10}}})
    with time_machine.travel(FROZEN, tick=False):
        key = spawn(label="w1")["childSessionKey"]
        spawn(label="x", requester_session_key=OTHER_OWNER)
        rows = selectors.delegate_list_for_owner(owner_session_key="main")
        status = selectors.delegate_status(owner_session_key=OWNER, label="w1")
    assert [acp.session.key for acp in rows] == [key]
    assert status["sessionKey"] == key and status["harness"] == "offline" and status["state"] == "idle"
    ms = int(FROZEN.timestamp() * 1000)
    assert status["idleExpiresAt"] == ms + 2 * 3600_000 and status["maxAgeExpiresAt"] == ms + 10 * 3600_000
    assert status["expiresAt"] == status["idleExpiresAt"] and status["lastActivityAt"] == ms


def test_close_clears_identity_first_and_never_reopens():
    """After close: no label, no owner, state closed, the list is empty, status and label
    follow-ups are rejected, and a send by key is refused too."""
    key = spawn(label="w1")["childSessionKey"]
    seen = {}

    def closer(*, session_key: str, reason: str) -> str:
        acp = AcpSession.objects.select_related("session").get(session__key=session_key)
        seen.update(owner=acp.owner_session_key, label=acp.session.label, state=acp.state, reason=reason)
        return "runtime closed"

    result = services.delegate_close_for_owner(owner_session_key=OWNER, label="w1", runtime_closer=closer)
    assert result == {"ok": True, "sessionKey": key, "label": "w1", "owner": OWNER, "reason": "manual-delegate-close",
                      "runtimeNotice": "runtime closed", "removedBindings": 0}  # fmt: skip
    assert seen == {"owner": None, "label": None, "state": "closed", "reason": "manual-delegate-close"}
    session = Session.objects.get(key=key)
    assert (session.label, session.label_scope, session.spawned_by) == (None, "", None)
    assert selectors.delegate_list_for_owner(owner_session_key=OWNER) == []
    with pytest.raises(DelegateNotFoundError):
        selectors.delegate_status(owner_session_key=OWNER, label="w1")
    with pytest.raises(SendTargetError, match="No session found"):
        send_start(request=SendRequest(message="again", requester_key=OWNER, label="w1", timeout_s=0))
    with pytest.raises(SessionForbiddenError):  # no longer the owner's: the visibility guard refuses
        send_start(request=SendRequest(message="again", requester_key=OWNER, session_key=key, timeout_s=0))
    with pytest.raises(SendTargetError, match="closed"):  # an operator's send by key is refused too
        send_start(request=SendRequest(message="again", requester_key=None, session_key=key, timeout_s=0))
    with pytest.raises(DelegateNotFoundError):
        services.delegate_close(session_key=key, runtime_closer=closer)


def test_close_failure_restores_identity_and_raises():
    key = spawn(label="w1")["childSessionKey"]

    def failing(*, session_key: str, reason: str) -> str:
        raise TimeoutError("harness did not stop")

    with pytest.raises(DelegateCloseError) as caught:
        services.delegate_close(session_key=key, runtime_closer=failing)
    assert caught.value.code == "UNAVAILABLE" and "harness did not stop" in caught.value.message
    acp = selectors.delegate_get(owner_session_key=OWNER, label="w1")
    assert acp.session.key == key and acp.state == "idle" and acp.session.spawned_by == OWNER
    assert services.delegate_close(session_key=key, runtime_closer=no_closer)["ok"]


# --- sweeps ---------------------------------------------------------------------------------


def test_sweep_closes_idle_and_old_workers_with_their_reasons():
    """Defaults 72 h idle / 168 h age: an untouched worker closes as idle after 72 h, a busy
    one as max-age after 168 h; a younger one stays."""
    with time_machine.travel(FROZEN, tick=False):
        idle = spawn(label="idle")["childSessionKey"]
        busy = spawn(label="busy")["childSessionKey"]

    def worked(hours: int, *keys: str) -> None:  # a turn ran at FROZEN + hours
        AcpSession.objects.filter(session__key__in=keys).update(last_activity_at=FROZEN + timedelta(hours=hours))

    worked(48, busy)
    with time_machine.travel(FROZEN + timedelta(hours=71), tick=False):
        assert services.delegate_sweep(runtime_closer=no_closer) == {"closed": [], "failed": []}
        young = spawn(label="young")["childSessionKey"]
    with time_machine.travel(FROZEN + timedelta(hours=72, seconds=1), tick=False):
        swept = services.delegate_sweep(runtime_closer=no_closer)
    assert swept["closed"] == [{"sessionKey": idle, "label": "idle", "reason": "delegate-idle-expired"}]
    worked(120, busy, young)
    with time_machine.travel(FROZEN + timedelta(hours=168), tick=False):
        swept = services.delegate_sweep(runtime_closer=no_closer)
    assert swept["closed"] == [{"sessionKey": busy, "label": "busy", "reason": "delegate-max-age-expired"}]
    assert [a.session.key for a in selectors.delegate_list_for_owner(owner_session_key=OWNER)] == [young]
    assert AcpSession.objects.get(session__key=idle).close_reason == "delegate-idle-expired"


def test_sweep_limits_of_zero_disable_and_failures_are_retried(gateway_config):
    gateway_config({"acp": {"delegate": {"idleHours": 0, "maxAgeHours": 1}}})
    with time_machine.travel(FROZEN, tick=False):
        key = spawn(label="w1")["childSessionKey"]
    later = FROZEN + timedelta(hours=2)

    def failing(*, session_key: str, reason: str) -> str:
        raise GatewayError("backend busy")

    with time_machine.travel(later, tick=False):
        assert services.delegate_sweep(runtime_closer=failing)["failed"] == [
            {"sessionKey": key, "error": f"ACP delegate close failed for {key}: backend busy"}
        ]
        assert services.delegate_sweep(runtime_closer=no_closer)["closed"][0]["reason"] == "delegate-max-age-expired"


def test_sweep_query_reads_only_expired_rows(gateway_config, django_assert_max_num_queries):
    """The sweep's candidate queries are range scans on the indexed columns: many fresh
    workers cost nothing but the two queries."""
    with time_machine.travel(FROZEN, tick=False):
        for n in range(30):
            spawn(label=f"w{n}")
    with time_machine.travel(FROZEN + timedelta(hours=1), tick=False), django_assert_max_num_queries(2):
        assert selectors.delegates_expired(now=FROZEN + timedelta(hours=1)) == []


def test_delegate_sweep_is_a_registered_maintenance_sweep():
    """The django-q2 maintenance task runs ``acp.delegates`` with the other sweeps."""
    from cron_app import tasks
    from cron_app.maintenance import sweep_names

    assert "acp.delegates" in sweep_names()
    with time_machine.travel(FROZEN, tick=False):
        key = spawn(label="w1")["childSessionKey"]
    with time_machine.travel(FROZEN + timedelta(hours=73), tick=False):
        assert tasks.maintenance_sweep()["acp.delegates"] == 1
    assert AcpSession.objects.get(session__key=key).close_reason == "delegate-idle-expired"

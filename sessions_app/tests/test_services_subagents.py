"""sessions_spawn's service: validation order and messages (spec-b §1.3), lineage fixed at
spawn, the child's prompt (ephemeral vs resumable), one transaction, follow-ups."""

from __future__ import annotations

import pytest
from django.utils import timezone

from sessions_app.models import Run, Session, SubagentRun
from sessions_app.services import subagents as svc
from sessions_app.services.sessions import session_ensure
from sessions_app.subagent_selectors import (
    subagent_count_active_children,
    subagent_count_pending_descendants,
    subagent_runs_for_requester,
    subagent_spawn_depth,
)

pytestmark = pytest.mark.django_db
MAIN = "agent:main:main"


def spawn(**kw):
    kw.setdefault("requester_session_key", MAIN)
    kw.setdefault("requester_run_id", None)
    kw.setdefault("task", "Summarise the logs")
    return svc.subagent_spawn(**kw)


def test_spawn_accepted_creates_child_session_run_and_registry_row():
    """An accepted spawn writes the child session (lineage fixed), its queued run and its row."""
    session_ensure(key=MAIN)
    result = spawn(label="logs", requester_run_id="parent-run")
    assert result["status"] == "accepted"
    assert result["childSessionKey"].startswith("agent:main:subagent:")
    assert "do NOT call sessions_list" in result["note"]
    child = Session.objects.get(key=result["childSessionKey"])
    assert (child.kind, child.spawned_by, child.spawn_depth) == ("subagent", MAIN, 1)
    assert (child.subagent_role, child.subagent_control_scope) == ("leaf", "none")
    run = Run.objects.get(run_id=result["runId"])
    assert (run.kind, run.status, run.session_key, run.parent_run_id) == ("subagent", "queued", child.key, "parent-run")
    assert run.input["message"].endswith("[Subagent Task]: Summarise the logs")
    assert run.input["message"].startswith("[Subagent Context] You are running as a subagent (depth 1/1).")
    row = SubagentRun.objects.get(run_id=run.run_id)
    assert (row.requester_session_key, row.label, row.cleanup, row.depth) == (MAIN, "logs", "keep", 1)


def test_spawn_keep_gets_resumable_prompt_and_delete_the_ephemeral_one():
    """Seed 003: cleanup keep swaps "Be ephemeral" for the resumable rule."""
    keep = Run.objects.get(run_id=spawn(cleanup="keep")["runId"]).input["extraSystemPrompt"]
    delete = Run.objects.get(run_id=spawn(cleanup="delete")["runId"]).input["extraSystemPrompt"]
    assert "Your session persists after completion. You may receive follow-up messages" in keep
    assert "Be ephemeral" not in keep
    assert "**Be ephemeral** - You may be terminated after task completion." in delete
    assert "follow-up messages" not in delete
    assert "- Requester session: agent:main:main." in keep


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"agent_id": "Agent not found: xyz"}, "error", 'Invalid agentId "Agent not found: xyz". Agent IDs must match'),
        ({"mode": "session"}, "error", 'mode="session" requires thread=true so the subagent can stay bound'),
        ({"thread": True}, "error", "thread=true is unavailable because no channel plugin registered"),
        ({"agent_id": "ops"}, "forbidden", "agentId is not allowed for sessions_spawn (allowed: none)"),
        ({"cleanup": "later"}, "error", 'Invalid cleanup "later"'),
        ({"model": "nope/x"}, "error", 'Invalid model "nope/x"'),
    ],
)
def test_spawn_refusals_have_the_spec_messages_and_write_nothing(kwargs, status, message):
    result = spawn(**kwargs)
    assert result["status"] == status
    assert message in result["error"]
    assert not Session.objects.filter(kind="subagent").exists()
    assert not SubagentRun.objects.exists() and not Run.objects.exists()


def test_spawn_depth_limit_default_one_forbids_a_subagent_spawning(gateway_config):
    child = spawn()["childSessionKey"]
    result = spawn(requester_session_key=child)
    assert result == {
        "status": "forbidden",
        "error": "sessions_spawn is not allowed at this depth (current depth: 1, max: 1)",
    }


def test_spawn_depth_two_makes_an_orchestrator_and_a_leaf(gateway_config):
    gateway_config({"agents": {"defaults": {"subagents": {"maxSpawnDepth": 2}}}})
    first = spawn()
    orchestrator = Session.objects.get(key=first["childSessionKey"])
    assert (orchestrator.subagent_role, orchestrator.subagent_control_scope) == ("orchestrator", "children")
    prompt = Run.objects.get(run_id=first["runId"]).input["extraSystemPrompt"]
    assert "You CAN spawn your own sub-agents" in prompt
    second = spawn(requester_session_key=orchestrator.key)
    leaf = Session.objects.get(key=second["childSessionKey"])
    assert (leaf.spawn_depth, leaf.subagent_role, leaf.spawned_by) == (2, "leaf", orchestrator.key)
    leaf_prompt = Run.objects.get(run_id=second["runId"]).input["extraSystemPrompt"]
    assert "spawned by the parent orchestrator" in leaf_prompt
    assert "You are a leaf worker and CANNOT spawn further sub-agents." in leaf_prompt
    assert spawn(requester_session_key=leaf.key)["error"].endswith("(current depth: 2, max: 2)")
    assert subagent_spawn_depth(session_key=leaf.key) == 2


def test_spawn_fan_out_limit_counts_active_children(gateway_config):
    gateway_config({"agents": {"defaults": {"subagents": {"maxChildrenPerAgent": 2}}}})
    spawn(), spawn()
    assert subagent_count_active_children(requester_session_key=MAIN) == 2
    assert spawn() == {
        "status": "forbidden",
        "error": "sessions_spawn has reached max active children for this session (2/2)",
    }
    SubagentRun.objects.update(status="ok", ended_at=timezone.now(), cleanup_handled=True)
    assert spawn()["status"] == "accepted"


def test_spawn_allowlist_and_require_agent_id(gateway_config):
    gateway_config({"agents": {"list": [
        {"id": "main", "subagents": {"allowAgents": ["research"], "requireAgentId": True}},
        {"id": "research"}, {"id": "ops"},
    ]}})  # fmt: skip
    assert "requires explicit agentId" in spawn()["error"]
    assert spawn(agent_id="ops")["error"] == "agentId is not allowed for sessions_spawn (allowed: research)"
    accepted = spawn(agent_id="research")
    assert accepted["childSessionKey"].startswith("agent:research:subagent:")
    assert Session.objects.get(key=accepted["childSessionKey"]).agent_id == "research"


def test_spawn_wildcard_allowlist_still_refuses_unknown_agents(gateway_config):
    gateway_config({"agents": {"defaults": {"subagents": {"allowAgents": ["*"]}}, "list": [{"id": "main"}]}})
    assert spawn(agent_id="ghost")["error"].startswith('Unknown agentId "ghost"')


def test_spawn_is_one_transaction(monkeypatch):
    """A failure after the child session was created leaves no half-created child."""

    def broken(**kwargs):
        raise RuntimeError("registry down")

    monkeypatch.setattr(SubagentRun.objects, "create", broken)
    with pytest.raises(RuntimeError):
        spawn()
    assert not Session.objects.filter(kind="subagent").exists()
    assert not Run.objects.exists()


def test_spawn_model_applied_and_cron_requester_gets_no_note(gateway_config):
    gateway_config({"models": {"providers": {"local": {"baseUrl": "http://127.0.0.1:9", "models": [{"id": "m1"}]}}}})
    result = spawn(model="local/m1", requester_session_key="agent:main:cron:job1")
    child = Session.objects.get(key=result["childSessionKey"])
    assert (child.provider_override, child.model_override, result["modelApplied"]) == ("local", "m1", True)
    assert "note" not in result


def test_follow_up_registers_a_run_on_the_requesters_kept_child_only():
    kept = spawn(cleanup="keep")
    SubagentRun.objects.update(status="ok", ended_at=timezone.now(), cleanup_handled=True)
    result = svc.subagent_follow_up(requester_session_key="main", requester_run_id="r2",
                                    child_session_key=kept["childSessionKey"], message="Now the errors")  # fmt: skip
    assert result["status"] == "accepted" and result["followUp"] is True
    row = SubagentRun.objects.get(run_id=result["runId"])
    assert (row.is_follow_up, row.task, row.requester_run_id, row.status) == (True, "Now the errors", "r2", "running")
    run = Run.objects.get(run_id=result["runId"])
    assert run.input["message"] == "Now the errors" and "persists after completion" in run.input["extraSystemPrompt"]
    assert subagent_count_pending_descendants(root_session_key=MAIN) == 1
    other = svc.subagent_follow_up(requester_session_key="agent:other:main", requester_run_id=None,
                                   child_session_key=kept["childSessionKey"], message="x")  # fmt: skip
    assert other is None
    deleted = spawn(cleanup="delete")
    assert svc.subagent_follow_up(requester_session_key=MAIN, requester_run_id=None,
                                  child_session_key=deleted["childSessionKey"], message="x") is None  # fmt: skip


def test_runs_for_requester_respects_the_requester_run_window(gateway_config):
    """Findings of an orchestrator run never include children of its earlier runs."""
    gateway_config({"agents": {"defaults": {"subagents": {"maxSpawnDepth": 2}}}})
    orchestrator = spawn()
    key = orchestrator["childSessionKey"]
    early = spawn(requester_session_key=key)
    SubagentRun.objects.filter(run_id=orchestrator["runId"]).update(ended_at=timezone.now())
    follow = SubagentRun.objects.get(run_id=orchestrator["runId"])
    follow.pk, follow.run_id, follow.ended_at, follow.started_at = None, "orchestrator-run-2", None, timezone.now()
    follow.save()
    late = spawn(requester_session_key=key)
    in_window = subagent_runs_for_requester(requester_session_key=key, requester_run_id="orchestrator-run-2")
    assert [r.run_id for r in in_window] == [late["runId"]]
    first_window = subagent_runs_for_requester(requester_session_key=key, requester_run_id=orchestrator["runId"])
    assert [r.run_id for r in first_window] == [early["runId"]]

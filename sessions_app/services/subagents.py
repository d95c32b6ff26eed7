"""Spawning sub-agents and registering their runs (spec-b §1.3–§1.6, §2.2; seed 003).

:func:`subagent_spawn` validates in the order of spec-b §1.3 (first failure wins) and
then, in ONE transaction, creates the child session with its lineage fixed (spawned by,
depth, role, control scope), queues the child's run (kind ``subagent``) and writes its
``SubagentRun`` row, so a failed spawn leaves nothing behind. It returns the tool's
result shape ``{status: accepted|forbidden|error, childSessionKey, runId, mode, note}``.

:func:`subagent_follow_up` registers a follow-up run on a kept child (``sessions_send``
with ``timeoutSeconds: 0`` to the caller's own sub-agent), announced back through the
same pipeline. Steering and killing live in ``subagent_control``; the announce flow in
``announce``.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from django.db import transaction
from django.utils import timezone

from openclaw_site.config import GatewayConfig, SubagentsConfig, UnknownModelError, get_config
from openclaw_site.errors import GatewayError

from .. import keys
from ..events import SESSIONS_GROUP, publish_on_commit
from ..models import Run, Session, SubagentRun
from ..subagent_prompt import (
    SPAWN_ACCEPTED_NOTE,
    SPAWN_SESSION_ACCEPTED_NOTE,
    ChildPromptContext,
    subagent_system_prompt,
    subagent_task_message,
)
from ..subagent_selectors import subagent_count_active_children, subagent_latest_for_child, subagent_spawn_depth
from .runs import run_enqueue
from .sessions import session_ensure

REJECTED_SPAWN_KEYS = ("target", "transport", "channel", "to", "threadId", "thread_id", "replyTo", "reply_to")
LABEL_MAX = 64

# Other spawn runtimes (``acp``) register ``fn(*, requester_session_key, requester_run_id,
# args) -> result`` here, so ``sessions_spawn`` dispatches without importing their app.
_SPAWN_RUNTIMES: dict[str, Callable[..., dict[str, Any]]] = {}


def register_spawn_runtime(name: str, handler: Callable[..., dict[str, Any]]) -> None:
    """Make ``sessions_spawn {runtime: name}`` call ``handler``."""
    _SPAWN_RUNTIMES[name] = handler


def spawn_runtime(name: str) -> Callable[..., dict[str, Any]] | None:
    return _SPAWN_RUNTIMES.get(name)


class SpawnRejected(GatewayError):
    """A spawn refused before anything was written; ``status`` is ``forbidden`` or ``error``."""

    def __init__(self, status: str, message: str) -> None:
        self.status = status
        self.code = "FORBIDDEN" if status == "forbidden" else "INVALID_REQUEST"
        super().__init__(message)

    def result(self, **extra: Any) -> dict[str, Any]:
        return {"status": self.status, "error": self.message, **extra}


@dataclass(frozen=True)
class SpawnPlan:
    """A validated spawn: who asks, for which agent, with which limits and settings."""

    requester_key: str
    requester_agent: str
    requester_run_id: str | None
    target_agent: str
    task: str
    label: str
    model_ref: str | None
    run_timeout_s: int
    cleanup: str
    mode: str
    cwd: str | None
    caller_depth: int
    max_depth: int
    expects_completion_message: bool


def subagents_config(cfg: GatewayConfig, agent_id: str) -> SubagentsConfig:
    """The agent's sub-agent limits; an unconfigured agent gets the default agent's."""
    agent = cfg.agent(agent_id) or cfg.agent(cfg.default_agent_id())
    return agent.subagents if agent else SubagentsConfig()


def requester_key_of(session_key: str, cfg: GatewayConfig | None = None) -> str:
    """The canonical store key of a requester (``main`` → the alias's key)."""
    return keys.resolve_session_store_key(cfg=cfg or get_config(), session_key=session_key)


# --- spawn -----------------------------------------------------------------------------


def subagent_spawn(
    *,
    requester_session_key: str,
    requester_run_id: str | None,
    task: str,
    label: str | None = None,
    agent_id: str | None = None,
    model: str | None = None,
    run_timeout_seconds: int | None = None,
    cleanup: str = "keep",
    mode: str = "run",
    cwd: str | None = None,
    thread: bool = False,
    expects_completion_message: bool = True,
) -> dict[str, Any]:
    """Spawn a sub-agent for ``task``; never blocks on the child (spec-b §1)."""
    try:
        plan = _plan(
            requester_session_key=requester_session_key, requester_run_id=requester_run_id, task=task,
            label=label, agent_id=agent_id, model=model, run_timeout_seconds=run_timeout_seconds,
            cleanup=cleanup, mode=mode, cwd=cwd, thread=thread,
            expects_completion_message=expects_completion_message,
        )  # fmt: skip
    except SpawnRejected as rejected:
        return rejected.result()
    child_key, run_id = _commit(plan)
    return _accepted(plan, child_key=child_key, run_id=run_id)


def _plan(**kw: Any) -> SpawnPlan:
    cfg = get_config()
    agent_id = (kw["agent_id"] or "").strip() or None
    if agent_id and not keys.is_valid_agent_id(agent_id):
        raise SpawnRejected(
            "error",
            f'Invalid agentId "{agent_id}". Agent IDs must match [a-z0-9][a-z0-9_-]{{0,63}}. '
            "Use agents_list to discover valid targets.",
        )
    mode = _check_mode(kw["mode"], kw["thread"])
    requester_key = requester_key_of(kw["requester_session_key"], cfg)
    requester_agent = keys.resolve_agent_id_from_session_key(requester_key)
    limits = subagents_config(cfg, requester_agent)
    caller_depth = _check_depth(requester_key, limits)
    _check_fan_out(requester_key, limits)
    target = _check_target(agent_id, requester_agent, limits)
    return SpawnPlan(
        requester_key=requester_key, requester_agent=requester_agent, requester_run_id=kw["requester_run_id"],
        target_agent=target, task=_check_task(kw["task"]), label=_check_label(kw["label"]),
        model_ref=_model_plan(cfg, kw["model"], target, requester_key),
        run_timeout_s=_check_timeout(kw["run_timeout_seconds"], limits),
        cleanup="keep" if mode == "session" else _check_cleanup(kw["cleanup"]), mode=mode,
        cwd=_check_cwd(kw["cwd"]), caller_depth=caller_depth, max_depth=limits.max_spawn_depth,
        expects_completion_message=kw["expects_completion_message"],
    )  # fmt: skip


def _check_mode(mode: str | None, thread: bool) -> str:
    mode = (mode or ("session" if thread else "run")).strip()
    if mode not in ("run", "session"):
        raise SpawnRejected("error", f'Invalid mode "{mode}". Use "run" or "session".')
    if mode == "session" and not thread:
        raise SpawnRejected(
            "error", 'mode="session" requires thread=true so the subagent can stay bound to a thread.'
        )
    if thread:
        # No channel plugin can bind threads in this gateway (spec-b §1.4 step 3).
        raise SpawnRejected(
            "error", "thread=true is unavailable because no channel plugin registered subagent_spawning hooks."
        )
    return mode


def _check_depth(requester_key: str, limits: SubagentsConfig) -> int:
    depth = subagent_spawn_depth(session_key=requester_key)
    if depth >= limits.max_spawn_depth:
        raise SpawnRejected(
            "forbidden",
            f"sessions_spawn is not allowed at this depth (current depth: {depth}, max: {limits.max_spawn_depth})",
        )
    return depth


def _check_fan_out(requester_key: str, limits: SubagentsConfig) -> None:
    active = subagent_count_active_children(requester_session_key=requester_key)
    if active >= limits.max_children_per_agent:
        raise SpawnRejected(
            "forbidden",
            "sessions_spawn has reached max active children for this session "
            f"({active}/{limits.max_children_per_agent})",
        )


def _check_target(agent_id: str | None, requester_agent: str, limits: SubagentsConfig) -> str:
    if agent_id is None and limits.require_agent_id:
        raise SpawnRejected(
            "forbidden",
            "sessions_spawn requires explicit agentId when requireAgentId is configured. "
            "Use agents_list to see allowed agent ids.",
        )
    target = keys.normalize_agent_id(agent_id or requester_agent)
    if not limits.allows(requester_agent_id=requester_agent, target_agent_id=target):
        allowed = ", ".join(limits.allow_agents) or "none"
        raise SpawnRejected("forbidden", f"agentId is not allowed for sessions_spawn (allowed: {allowed})")
    if target != requester_agent and not get_config().has_agent(target):
        # No ghost agents: an allowed wildcard still needs a configured target.
        raise SpawnRejected("error", f'Unknown agentId "{target}". Use agents_list to discover valid targets.')
    return target


def _check_task(task: str | None) -> str:
    task = (task or "").strip()
    if not task:
        raise SpawnRejected("error", "task is required")
    return task


def _check_label(label: str | None) -> str:
    label = (label or "").strip()
    if len(label) > LABEL_MAX:
        raise SpawnRejected("error", f"label too long (max {LABEL_MAX} characters)")
    return label


def _check_cleanup(cleanup: str | None) -> str:
    cleanup = (cleanup or "keep").strip()
    if cleanup not in ("keep", "delete"):
        raise SpawnRejected("error", f'Invalid cleanup "{cleanup}". Use "keep" or "delete".')
    return cleanup


def _check_timeout(seconds: int | float | None, limits: SubagentsConfig) -> int:
    if seconds is None:
        return limits.run_timeout_seconds
    if seconds < 0:
        raise SpawnRejected("error", "runTimeoutSeconds must be >= 0")
    return int(seconds)


def _check_cwd(cwd: str | None) -> str | None:
    cwd = (cwd or "").strip() or None
    if cwd and not os.path.isdir(cwd):
        raise SpawnRejected("error", f"cwd does not exist or is not a directory: {cwd}")
    return cwd


def _model_plan(cfg: GatewayConfig, explicit: str | None, target: str, requester_key: str) -> str | None:
    """Explicit model > the target's ``subagents.model`` (defaults merged) > the caller's model."""
    ref = (explicit or "").strip() or subagents_config(cfg, target).model or _caller_model(requester_key)
    if not ref:
        return None
    try:
        provider, model_id = cfg.resolve_model(ref)
    except UnknownModelError as exc:
        raise SpawnRejected("error", f'Invalid model "{ref}": {exc.message}') from exc
    return f"{provider}/{model_id}"


def _caller_model(requester_key: str) -> str | None:
    row = Session.objects.filter(key=requester_key).values("provider_override", "model_override").first()
    if not row or not row["model_override"]:
        return None
    return f"{row['provider_override']}/{row['model_override']}" if row["provider_override"] else row["model_override"]


@transaction.atomic
def _commit(plan: SpawnPlan) -> tuple[str, str]:
    """Child session, child run and registry row, all or nothing."""
    child_key = f"agent:{plan.target_agent}:subagent:{uuid.uuid4()}"
    child_depth = plan.caller_depth + 1
    role = "orchestrator" if child_depth < plan.max_depth else "leaf"
    requester = Session.objects.filter(key=plan.requester_key).first()
    child, _ = session_ensure(key=child_key, agent_id=plan.target_agent, defaults=_child_fields(plan, child_depth, role))
    prompt = subagent_system_prompt(_prompt_context(plan, child_key, child_depth, requester))
    message = subagent_task_message(
        task=plan.task, depth=child_depth, max_depth=plan.max_depth, session_mode=plan.mode == "session"
    )
    run_id = str(uuid.uuid4())
    _enqueue_child_run(plan, child, run_id=run_id, message=message, prompt=prompt)
    SubagentRun.objects.create(
        run_id=run_id, child_session_key=child_key, requester_session_key=plan.requester_key,
        requester_run_id=plan.requester_run_id, requester_display_key=plan.requester_key,
        requester_origin=_origin_of(requester), task=plan.task, label=plan.label, agent_id=plan.target_agent,
        model=plan.model_ref or "", cleanup=plan.cleanup, mode=plan.mode, depth=child_depth, role=role,
        run_timeout_s=plan.run_timeout_s or None, expects_completion_message=plan.expects_completion_message,
        resumable=plan.cleanup == "keep", started_at=timezone.now(),
    )  # fmt: skip
    publish_on_commit(SESSIONS_GROUP, "sessions.changed", {
        "reason": "create", "sessionKey": child_key, "parentSessionKey": plan.requester_key,
        "label": plan.label or None, "kind": "subagent",
    })  # fmt: skip
    return child_key, run_id


def _child_fields(plan: SpawnPlan, depth: int, role: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "kind": Session.Kind.SUBAGENT, "spawned_by": plan.requester_key, "spawn_depth": depth,
        "subagent_role": role, "subagent_control_scope": "children" if role == "orchestrator" else "none",
        "extra": {"cwd": plan.cwd} if plan.cwd else {},
    }  # fmt: skip
    if plan.model_ref:
        provider, model_id = plan.model_ref.split("/", 1)
        fields.update(provider_override=provider, model_override=model_id, model_override_source="spawn")
    return fields


def _prompt_context(plan: SpawnPlan, child_key: str, depth: int, requester: Session | None) -> ChildPromptContext:
    return ChildPromptContext(
        child_session_key=child_key, requester_session_key=plan.requester_key, task=plan.task,
        child_depth=depth, max_spawn_depth=plan.max_depth, label=plan.label,
        requester_channel=(requester.channel if requester else ""), resumable=plan.cleanup == "keep",
        acp_enabled=bool(get_config().acp.get("enabled", True)),
    )  # fmt: skip


def _enqueue_child_run(plan: SpawnPlan, child: Session, *, run_id: str, message: str, prompt: str) -> Run:
    run_input = {
        "message": message, "extraSystemPrompt": prompt, "lane": "subagent", "deliver": False,
        "label": plan.label or None, "model": plan.model_ref, "cwd": plan.cwd,
    }  # fmt: skip
    run, _ = run_enqueue(
        session=child, agent_id=plan.target_agent, kind=Run.Kind.SUBAGENT, run_id=run_id,
        input={k: v for k, v in run_input.items() if v is not None}, timeout_s=plan.run_timeout_s or None,
        source_session_key=plan.requester_key, parent_run_id=plan.requester_run_id,
    )  # fmt: skip
    return run


def _origin_of(session: Session | None) -> dict[str, Any]:
    if session is None:
        return {}
    origin = dict(session.delivery_context or session.origin or {})
    if session.channel and "channel" not in origin:
        origin["channel"] = session.channel
    return origin


def _accepted(plan: SpawnPlan, *, child_key: str, run_id: str) -> dict[str, Any]:
    result: dict[str, Any] = {
        "status": "accepted", "childSessionKey": child_key, "runId": run_id, "mode": plan.mode,
        "modelApplied": bool(plan.model_ref),
    }  # fmt: skip
    if not keys.is_cron_session_key(plan.requester_key):
        result["note"] = SPAWN_SESSION_ACCEPTED_NOTE if plan.mode == "session" else SPAWN_ACCEPTED_NOTE
    return result


# --- follow-ups (seed 003) -----------------------------------------------------------------


def subagent_follow_up(
    *,
    requester_session_key: str,
    requester_run_id: str | None,
    child_session_key: str,
    message: str,
    run_id: str | None = None,
) -> dict[str, Any] | None:
    """Queue ``message`` as a follow-up run of the requester's own kept sub-agent.

    The run is registered like a spawn (``is_follow_up``), so its result is announced
    back through the same pipeline, without the follow-up hint. Returns None when the
    child is not a kept, live sub-agent of this requester (the caller sends normally).
    A replay with the same ``run_id`` returns the follow-up already registered.
    """
    requester_key = requester_key_of(requester_session_key)
    accepted = {"status": "accepted", "sessionKey": child_session_key, "followUp": True}
    with transaction.atomic():
        if run_id and SubagentRun.objects.filter(run_id=run_id, child_session_key=child_session_key).exists():
            return {**accepted, "runId": run_id}
        previous = subagent_latest_for_child(child_session_key=child_session_key)
        child = Session.objects.filter(key=child_session_key).first()
        if not _can_follow_up(previous, child, requester_key):
            return None
        run = _enqueue_follow_up(previous, child, message=message, requester_run_id=requester_run_id, run_id=run_id)
        _register_follow_up(previous, run_id=run.run_id, message=message, requester_run_id=requester_run_id)
    return {**accepted, "runId": run.run_id}


def _can_follow_up(previous: SubagentRun | None, child: Session | None, requester_key: str) -> bool:
    return (
        previous is not None
        and child is not None
        and previous.requester_session_key == requester_key
        and previous.cleanup == "keep"
        and previous.status != SubagentRun.Status.KILLED
    )


def _enqueue_follow_up(
    previous: SubagentRun, child: Session, *, message: str, requester_run_id: str | None, run_id: str | None
) -> Run:
    first = Run.objects.filter(run_id=previous.run_id).values_list("input", flat=True).first() or {}
    run_input = {"message": message, "lane": "subagent", "deliver": False, "followUp": True}
    if first.get("extraSystemPrompt"):
        run_input["extraSystemPrompt"] = first["extraSystemPrompt"]
    run, _ = run_enqueue(
        session=child, agent_id=child.agent_id, kind=Run.Kind.SUBAGENT, run_id=run_id or str(uuid.uuid4()),
        input=run_input, timeout_s=previous.run_timeout_s, source_session_key=previous.requester_session_key,
        parent_run_id=requester_run_id,
    )  # fmt: skip
    return run


def _register_follow_up(previous: SubagentRun, *, run_id: str, message: str, requester_run_id: str | None) -> None:
    SubagentRun.objects.create(
        run_id=run_id, child_session_key=previous.child_session_key,
        requester_session_key=previous.requester_session_key, requester_run_id=requester_run_id,
        requester_display_key=previous.requester_display_key, requester_origin=previous.requester_origin,
        task=message, label=previous.label, agent_id=previous.agent_id, model=previous.model,
        cleanup=previous.cleanup, mode=previous.mode, depth=previous.depth, role=previous.role,
        run_timeout_s=previous.run_timeout_s, expects_completion_message=True, resumable=True,
        is_follow_up=True, started_at=timezone.now(),
    )  # fmt: skip

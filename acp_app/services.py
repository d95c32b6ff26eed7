"""ACP spawns and hub-delegated workers: the writes (spec-b §1.9, §6).

:func:`acp_spawn` is ``sessions_spawn({runtime: "acp"})``: it checks the request in
OpenClaw's order, then in one transaction creates the child session
``agent:<harness>:acp:<uuid>``, its :class:`AcpSession` row and the run of its first
task. The engine starts the harness process when it executes that run
(``acp_app.executor``). ``delegate: true`` makes a persistent hub-delegated worker that
the owner (the requester) follows up by label; its label is unique per owner, enforced
by the ``session_delegate_label_unique_per_owner`` constraint.

:func:`delegate_close` clears the worker's identity first (marker, label, lineage; the
row stays), then closes the harness runtime; when that fails the identity is restored
and the error raised, so an operator or the sweep can retry. A closed worker never
reopens. :func:`delegate_sweep` closes workers past ``acp.delegate`` idle or max-age
limits through the same path.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from openclaw_site.errors import GatewayError

from .exceptions import AcpSessionClosedError, AcpSpawnRejected, DelegateCloseError, DelegateLabelInUseError
from .models import AcpSession
from .selectors import delegate_expiry, delegate_get, delegate_get_by_key, delegates_expired, owner_key_of

logger = logging.getLogger(__name__)

LABEL_MAX = 64
AUTO_LABEL_FORMAT = "delegate-%Y%m%d-%H%M%S"
MANUAL_CLOSE = "manual-delegate-close"
DELEGATE_NOTE = (
    'hub-delegated worker stays active after this task; follow up with sessions_send(label="{label}") '
    "from this session. Close it with /acp delegate close {label}."
)
RuntimeCloser = Callable[..., str | None]


def _config():
    from openclaw_site.config import get_config

    return get_config()


# --- spawn: the plan ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AcpSpawnPlan:
    requester_key: str
    requester_run_id: str | None
    harness: str
    task: str
    label: str
    mode: str  # run | session
    delegate: bool
    cwd: str
    depth: int
    run_timeout_s: int | None
    resume_session_id: str | None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def runtime_mode(self) -> str:
        return AcpSession.Mode.ONESHOT if self.mode == "run" else AcpSession.Mode.PERSISTENT


def acp_spawn(
    *,
    requester_session_key: str,
    task: str,
    agent_id: str | None = None,
    label: str | None = None,
    mode: str | None = None,
    thread: bool = False,
    delegate: bool = False,
    cwd: str | None = None,
    sandbox: str | None = None,
    sandboxed: bool = False,
    stream_to: str | None = None,
    run_timeout_seconds: int | None = None,
    resume_session_id: str | None = None,
    requester_run_id: str | None = None,
) -> dict[str, Any]:
    """``sessions_spawn({runtime: "acp"})``: accepted at once (never waits for the harness),
    or ``{status: forbidden|error, errorCode, error}`` with nothing written."""
    try:
        plan = _plan(
            requester_session_key=requester_session_key, requester_run_id=requester_run_id, task=task,
            agent_id=agent_id, label=label, mode=mode, thread=thread, delegate=delegate, cwd=cwd, sandbox=sandbox,
            sandboxed=sandboxed, stream_to=stream_to, run_timeout_seconds=run_timeout_seconds,
            resume_session_id=resume_session_id,
        )  # fmt: skip
        session, run_id = _commit(plan)
    except AcpSpawnRejected as rejected:
        return rejected.result()
    return _accepted(plan, session=session, run_id=run_id)


def _plan(**kw: Any) -> AcpSpawnPlan:
    acp = _config().acp or {}
    if acp.get("enabled") is False:
        raise AcpSpawnRejected("acp_disabled", "ACP is disabled by policy (`acp.enabled=false`).", status="forbidden")
    requester = (kw["requester_session_key"] or "").strip()
    if not requester:
        raise AcpSpawnRejected("requester_session_required", "ACP spawn needs a requester session.")
    if kw["sandboxed"] or kw["sandbox"] == "require":
        raise AcpSpawnRejected(
            "runtime_policy",
            'Sandboxed sessions cannot spawn ACP sessions because runtime="acp" runs on the host. '
            'Use runtime="subagent" from sandboxed sessions.',
            status="forbidden",
        )
    mode = _check_mode(kw["mode"], thread=bool(kw["thread"]), delegate=bool(kw["delegate"]))
    harness = _check_harness(kw["agent_id"] or acp.get("defaultAgent"))
    owner = owner_key_of(requester)
    depth = _check_depth(owner)
    return AcpSpawnPlan(
        requester_key=owner, requester_run_id=kw["requester_run_id"], harness=harness, task=_check_task(kw["task"]),
        label=_check_label(kw["label"]), mode=mode, delegate=bool(kw["delegate"]),
        cwd=_resolve_cwd(kw["cwd"], owner), depth=depth + 1, run_timeout_s=_check_timeout(kw["run_timeout_seconds"]),
        resume_session_id=(kw["resume_session_id"] or "").strip() or None,
        options={"streamTo": kw["stream_to"]} if kw["stream_to"] else {},
    )  # fmt: skip


def _check_mode(mode: str | None, *, thread: bool, delegate: bool) -> str:
    mode = (mode or "").strip() or None
    if mode not in (None, "run", "session"):
        raise AcpSpawnRejected("spawn_failed", f'Invalid mode "{mode}". Use "run" or "session".')
    if delegate and thread:
        raise AcpSpawnRejected(
            "thread_binding_invalid",
            "delegate=true cannot be combined with thread=true: hub-delegated workers are not bound to a thread.",
        )
    if delegate and mode == "run":
        raise AcpSpawnRejected(
            "spawn_failed", 'delegate=true implies mode="session" (a persistent worker); mode="run" is not allowed.'
        )
    if delegate:
        return "session"
    mode = mode or ("session" if thread else "run")
    if mode == "session" and not thread:
        raise AcpSpawnRejected(
            "thread_required",
            'mode="session" requires thread=true so the ACP session can stay bound to a thread '
            "(or delegate=true for a hub-delegated worker).",
        )
    if thread:
        raise AcpSpawnRejected(
            "thread_required", "thread=true is unavailable: no channel of this gateway can bind ACP sessions to threads."
        )
    return mode


def _check_harness(agent_id: str | None) -> str:
    from sessions_app import keys

    from .runtime import AcpAgentForbiddenError, AcpAgentNotConfiguredError, harness_spec

    raw = (agent_id or "").strip()
    if not raw:
        raise AcpSpawnRejected(
            "target_agent_required",
            "ACP target agent is not configured. Pass agentId in sessions_spawn or set acp.defaultAgent in config.",
        )
    if not keys.is_valid_agent_id(raw):
        raise AcpSpawnRejected("spawn_failed", f'Invalid agentId "{raw}". ACP harness ids must match [a-z0-9][a-z0-9_-]{{0,63}}.')
    harness = keys.normalize_agent_id(raw)
    try:
        harness_spec(harness)
    except AcpAgentForbiddenError as error:
        raise AcpSpawnRejected("agent_forbidden", error.message, status="forbidden") from error
    except AcpAgentNotConfiguredError as error:
        raise AcpSpawnRejected("spawn_failed", error.message) from error
    return harness


def _check_depth(owner: str) -> int:
    from sessions_app import keys
    from sessions_app.services.subagents import subagents_config
    from sessions_app.subagent_selectors import subagent_spawn_depth

    depth = subagent_spawn_depth(session_key=owner)
    limit = subagents_config(_config(), keys.resolve_agent_id_from_session_key(owner)).max_spawn_depth
    if depth >= limit:
        raise AcpSpawnRejected(
            "subagent_policy",
            f"sessions_spawn is not allowed at this depth (current depth: {depth}, max: {limit})",
            status="forbidden",
        )
    return depth


def _check_task(task: str | None) -> str:
    task = (task or "").strip()
    if not task:
        raise AcpSpawnRejected("spawn_failed", "task is required")
    return task


def _check_label(label: str | None) -> str:
    label = (label or "").strip()
    if len(label) > LABEL_MAX:
        raise AcpSpawnRejected("spawn_failed", f"label too long (max {LABEL_MAX} characters)")
    return label


def _check_timeout(seconds: int | float | None) -> int | None:
    if seconds is None:
        return None
    if seconds < 0:
        raise AcpSpawnRejected("spawn_failed", "runTimeoutSeconds must be >= 0")
    return int(seconds) or None


def inherited_workspace(owner: str) -> str:
    """The requester's workspace: its spawned workspace dir, else its agent's
    ``workspace``, else ``agents.defaults.workspace``, else ``<state dir>/workspace``."""
    from sessions_app import keys
    from sessions_app.models import Session

    row = Session.objects.filter(key=owner).values("spawned_workspace_dir", "extra").first() or {}
    cfg = _config()
    agent = cfg.agent(keys.resolve_agent_id_from_session_key(owner))
    defaults = ((cfg.raw or {}).get("agents") or {}).get("defaults") or {}
    chosen = (row.get("spawned_workspace_dir") or (row.get("extra") or {}).get("cwd")
              or (agent.raw.get("workspace") if agent else None) or defaults.get("workspace"))  # fmt: skip
    if chosen:
        return os.path.expanduser(str(chosen))
    default = settings.OPENCLAW_STATE_DIR / "workspace"
    default.mkdir(parents=True, exist_ok=True)
    return str(default)


def _resolve_cwd(cwd: str | None, owner: str) -> str:
    base = inherited_workspace(owner)
    wanted = os.path.expanduser((cwd or "").strip()) or base
    resolved = os.path.normpath(os.path.join(base, wanted))
    if not os.path.isdir(resolved):
        raise AcpSpawnRejected("cwd_resolution_failed", f"ACP cwd does not exist or is not a directory: {resolved}")
    return resolved


# --- spawn: the commit -----------------------------------------------------------------------


@transaction.atomic
def _commit(plan: AcpSpawnPlan):
    """Child session (label allocated under the per-owner constraint), ACP row, first run,
    and for ``mode: "run"`` the registry row that announces the result; all or nothing."""
    from sessions_app.services.sessions import publish_session_changed

    session = _insert_session(plan, f"agent:{plan.harness}:acp:{uuid.uuid4()}")
    AcpSession.objects.create(
        session=session, harness_agent=plan.harness, backend="acp", runtime_session_name=session.key,
        upstream_session_id=plan.resume_session_id, cwd=plan.cwd, mode=plan.runtime_mode,
        state=AcpSession.State.IDLE, runtime_options=plan.options, last_activity_at=session.created_at,
        owner_session_key=plan.requester_key if plan.delegate else None,
        delegated_at=session.created_at if plan.delegate else None,
    )  # fmt: skip
    run_id = _enqueue_first_task(plan, session)
    publish_session_changed(session, reason="create")
    return session, run_id


def _insert_session(plan: AcpSpawnPlan, key: str):
    from sessions_app.models import Session

    now = timezone.now()
    fields = {
        "key": key, "agent_id": plan.harness, "kind": Session.Kind.ACP, "spawned_by": plan.requester_key,
        "spawn_depth": plan.depth, "subagent_role": "leaf", "subagent_control_scope": "none",
        "spawned_workspace_dir": plan.cwd, "updated_at": now, "session_started_at": now,
        "extra": {"acp": {"harness": plan.harness, "mode": plan.runtime_mode}},
    }  # fmt: skip
    if not plan.delegate:
        return Session.objects.create(**fields)
    fields["label_scope"] = plan.requester_key
    fields["extra"]["hubDelegated"] = {"ownerSessionKey": plan.requester_key, "createdAt": int(now.timestamp() * 1000)}
    for label in _label_candidates(plan, now):
        try:
            with transaction.atomic():
                return Session.objects.create(label=label, **fields)
        except IntegrityError:
            if plan.label:
                raise _label_rejected(plan) from None
    raise AcpSpawnRejected("spawn_failed", "could not allocate a delegate label")


def _label_rejected(plan: AcpSpawnPlan) -> AcpSpawnRejected:
    error = DelegateLabelInUseError(plan.label, owner=plan.requester_key)
    return AcpSpawnRejected("spawn_failed", error.message, label=plan.label)


def _label_candidates(plan: AcpSpawnPlan, now: datetime):
    """The explicit label, or ``delegate-YYYYMMDD-HHMMSS`` (UTC), ``-2`` … ``-99``, then
    ``-<UTC ms>``; labels the owner already uses are skipped (the constraint still decides)."""
    from sessions_app.models import Session

    if plan.label:
        if Session.objects.filter(label_scope=plan.requester_key, label=plan.label).exists():
            raise _label_rejected(plan)
        yield plan.label
        return
    base = now.astimezone(timezone.get_fixed_timezone(0)).strftime(AUTO_LABEL_FORMAT)
    taken = set(
        Session.objects.filter(label_scope=plan.requester_key, label__startswith=base).values_list("label", flat=True)
    )
    for candidate in [base, *(f"{base}-{n}" for n in range(2, 100))]:
        if candidate not in taken:
            yield candidate
    yield f"{base}-{int(now.timestamp() * 1000)}"


def _enqueue_first_task(plan: AcpSpawnPlan, session) -> str:
    from sessions_app.models import Run, SubagentRun
    from sessions_app.services.runs import run_enqueue

    run_id = str(uuid.uuid4())
    kind = Run.Kind.SUBAGENT if plan.mode == "run" else Run.Kind.ACP
    run_input = {"message": plan.task, "lane": "acp", "deliver": False, "runtime": "acp",
                 "label": session.label or plan.label or None}  # fmt: skip
    run_enqueue(
        session=session, agent_id=plan.harness, kind=kind, run_id=run_id,
        input={k: v for k, v in run_input.items() if v is not None}, timeout_s=plan.run_timeout_s,
        source_session_key=plan.requester_key, parent_run_id=plan.requester_run_id,
    )  # fmt: skip
    if plan.mode == "run":
        # One-shot ACP runs report through the sub-agent announce pipeline (spec-b §1.9).
        SubagentRun.objects.create(
            run_id=run_id, child_session_key=session.key, requester_session_key=plan.requester_key,
            requester_run_id=plan.requester_run_id, requester_display_key=plan.requester_key, task=plan.task,
            label=plan.label, agent_id=plan.harness, cleanup="keep", mode="run", depth=plan.depth, role="leaf",
            run_timeout_s=plan.run_timeout_s, started_at=timezone.now(),
        )  # fmt: skip
    return run_id


def _accepted(plan: AcpSpawnPlan, *, session, run_id: str) -> dict[str, Any]:
    from sessions_app import keys
    from sessions_app.subagent_prompt import SPAWN_ACCEPTED_NOTE

    result: dict[str, Any] = {
        "status": "accepted", "childSessionKey": session.key, "runId": run_id, "mode": plan.mode,
        "runtime": "acp", "agentId": plan.harness, "modelApplied": False,
    }  # fmt: skip
    if plan.delegate:
        result.update(delegate=True, label=session.label)
    if not keys.is_cron_session_key(plan.requester_key):
        result["note"] = DELEGATE_NOTE.format(label=session.label) if plan.delegate else SPAWN_ACCEPTED_NOTE
    return result


# --- close -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Identity:
    """What close clears, kept to restore it when the runtime close fails."""

    owner: str
    label: str | None
    label_scope: str
    spawned_by: str | None
    parent_session_key: str | None
    state: str


def _snapshot(acp: AcpSession) -> _Identity:
    session = acp.session
    return _Identity(acp.owner_session_key or "", session.label, session.label_scope, session.spawned_by,
                     session.parent_session_key, acp.state)  # fmt: skip


def _clear_identity(acp: AcpSession, *, reason: str) -> _Identity:
    from sessions_app.services.sessions import publish_session_changed

    with transaction.atomic():
        acp = AcpSession.objects.select_for_update().select_related("session").get(pk=acp.pk)
        if not acp.owner_session_key or acp.state == AcpSession.State.CLOSED:
            raise AcpSessionClosedError(acp.session.key)
        identity = _snapshot(acp)
        session = acp.session
        session.label, session.label_scope, session.spawned_by, session.parent_session_key = None, "", None, None
        session.extra = {**(session.extra or {}), "hubDelegated": None}
        session.updated_at = timezone.now()
        session.save(update_fields=["label", "label_scope", "spawned_by", "parent_session_key", "extra", "updated_at"])
        acp.owner_session_key, acp.state, acp.closed_at, acp.close_reason = None, AcpSession.State.CLOSED, timezone.now(), reason
        acp.runtime_options = {**(acp.runtime_options or {}), "closedDelegate": {"owner": identity.owner, "label": identity.label}}
        acp.save(update_fields=["owner_session_key", "state", "closed_at", "close_reason", "runtime_options", "updated_at"])
        publish_session_changed(session, reason="delegate-close")
    return identity


def _restore_identity(acp: AcpSession, identity: _Identity) -> None:
    """Best effort: put the marker, label and lineage back so a retry can close again."""
    try:
        with transaction.atomic():
            session = acp.session
            session.label, session.label_scope = identity.label, identity.label_scope
            session.spawned_by, session.parent_session_key = identity.spawned_by, identity.parent_session_key
            marker = {"ownerSessionKey": identity.owner, "createdAt": int((acp.delegated_at or acp.created_at).timestamp() * 1000)}
            session.extra = {**(session.extra or {}), "hubDelegated": marker}
            session.save(update_fields=["label", "label_scope", "spawned_by", "parent_session_key", "extra"])
            AcpSession.objects.filter(pk=acp.pk).update(
                owner_session_key=identity.owner, state=identity.state, closed_at=None, close_reason=""
            )
    except Exception:
        logger.exception("could not restore the identity of delegate %s", acp.session.key)


def default_runtime_closer(*, session_key: str, reason: str) -> str | None:
    from .executor import runtime_close

    return runtime_close(session_key=session_key, reason=reason)


def delegate_close(
    *, session_key: str, reason: str = MANUAL_CLOSE, runtime_closer: RuntimeCloser | None = None
) -> dict[str, Any]:
    """Close one open worker (any owner; the caller checked ownership).

    Clears the identity first, then closes the runtime; on a runtime failure restores the
    identity and raises :class:`DelegateCloseError`. Returns ``{ok, sessionKey, label,
    owner, reason, runtimeNotice, removedBindings}``."""
    acp = delegate_get_by_key(session_key=session_key)
    identity = _clear_identity(acp, reason=reason)
    try:
        notice = (runtime_closer or default_runtime_closer)(session_key=acp.session.key, reason=reason)
    except Exception as error:
        _restore_identity(acp, identity)
        message = error.message if isinstance(error, GatewayError) else f"{type(error).__name__}: {error}"
        raise DelegateCloseError(acp.session.key, message) from error
    return {"ok": True, "sessionKey": acp.session.key, "label": identity.label, "owner": identity.owner,
            "reason": reason, "runtimeNotice": notice, "removedBindings": 0}  # fmt: skip


def delegate_close_for_owner(
    *, owner_session_key: str, label: str, reason: str = MANUAL_CLOSE, runtime_closer: RuntimeCloser | None = None
) -> dict[str, Any]:
    """Close the owner's worker with this label (``/acp delegate close <label>``)."""
    acp = delegate_get(owner_session_key=owner_session_key, label=label)
    return delegate_close(session_key=acp.session.key, reason=reason, runtime_closer=runtime_closer)


def delegate_sweep(*, now: datetime | None = None, runtime_closer: RuntimeCloser | None = None) -> dict[str, Any]:
    """Close every worker past its max age or idle limit (the maintenance job).

    Returns ``{closed: [{sessionKey, label, reason}], failed: [{sessionKey, error}]}``;
    a failed close keeps its identity, so the next sweep retries it."""
    now = now or timezone.now()
    closed, failed = [], []
    for acp, reason in delegates_expired(now=now):
        try:
            result = delegate_close(session_key=acp.session.key, reason=reason, runtime_closer=runtime_closer)
        except GatewayError as error:
            logger.warning("delegate sweep could not close %s: %s", acp.session.key, error.message)
            failed.append({"sessionKey": acp.session.key, "error": error.message})
            continue
        closed.append({"sessionKey": result["sessionKey"], "label": result["label"], "reason": reason})
    return {"closed": closed, "failed": failed}


def delegate_preview(acp: AcpSession, *, now: datetime | None = None) -> dict[str, Any]:
    expiry = delegate_expiry(acp, now=now)
    return {"idleExpiresAt": expiry.idle_expires_at, "maxAgeExpiresAt": expiry.max_age_expires_at, "expired": expiry.reason}


# --- engine-side state --------------------------------------------------------------------------


def acp_turn_prepare(*, session_pk: int) -> AcpSession:
    """The ACP row of a session about to run a turn; a closed one raises
    :class:`AcpSessionClosedError` (a closed worker never reopens)."""
    acp = AcpSession.objects.select_related("session").get(session_id=session_pk)
    if acp.state == AcpSession.State.CLOSED:
        raise AcpSessionClosedError(acp.session.key)
    return acp


def acp_runtime_attached(*, acp_pk: int, upstream_session_id: str, pid: int | None, engine_owner: str) -> None:
    """A turn holds a live harness: remember its upstream id and pid, mark it running."""
    AcpSession.objects.filter(pk=acp_pk).exclude(state=AcpSession.State.CLOSED).update(
        upstream_session_id=upstream_session_id or None, process_pid=pid, engine_owner=engine_owner,
        state=AcpSession.State.RUNNING, last_activity_at=timezone.now(), updated_at=timezone.now(),
    )  # fmt: skip


def acp_turn_ended(*, acp_pk: int, error: str | None = None, process_gone: bool = False) -> None:
    """The turn ended: idle again, or ``error`` with the reason (the next turn re-ensures)."""
    fields: dict[str, Any] = {"last_activity_at": timezone.now(), "updated_at": timezone.now(),
                              "state": AcpSession.State.ERROR if error else AcpSession.State.IDLE}  # fmt: skip
    if error is not None:
        fields["last_error"] = error[:4000]
    if process_gone:
        fields["process_pid"] = None
    AcpSession.objects.filter(pk=acp_pk).exclude(state=AcpSession.State.CLOSED).update(**fields)


def acp_runtime_released(*, session_keys: list[str]) -> None:
    """The engine closed these harness processes (idle TTL, exit): forget their pids."""
    AcpSession.objects.filter(session__key__in=session_keys).update(process_pid=None, engine_owner=None)

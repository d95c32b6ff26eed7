"""``sessions_send``: one session messages another and (optionally) waits for the reply.

The one service behind the ``sessions_send`` agent tool, ``tools.invoke`` and
``POST /api/v1/sessions/send`` (spec-b §4). :func:`session_send` resolves the target
(sessionKey | label (+agentId) | agentId alone), checks visibility, the agent-to-agent
policy and the target's send policy, stores the message as a ``Delivery`` and then:

- ``timeout_s == 0`` (fire and forget): answers ``accepted`` at once;
- otherwise waits (bounded, polling the row, never blocking sibling tool calls) until
  the run that read the message has ended: ``ok`` with its reply, or ``error`` /
  ``timeout`` from that run; a wait that runs out first is a soft timeout, ``accepted``,
  and the reply flows back later as a ``pingback`` delivery to the caller.

Resolution failures raise :class:`SendTargetError` (tool status ``error``) or
``SessionForbiddenError`` (status ``forbidden``); the agent-to-agent flow that follows a
reply lives in ``services.a2a``.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.db import transaction

from openclaw_site.errors import InvalidRequestError

from .. import keys
from ..models import Delivery, Run, Session
from . import a2a
from .deliveries import delivery_enqueue, split_run_scoped_key
from .visibility import SessionForbiddenError, a2a_check, visibility_check, visibility_for

DEFAULT_TIMEOUT_S = 30
THREAD_TARGET_ERROR = (
    "sessions_send cannot target a thread session for inter-agent coordination. "
    "Use the parent channel session key instead."
)
_POLL_START_S = 0.05
_POLL_MAX_S = 0.5


class SendTargetError(InvalidRequestError):
    """The target could not be resolved (tool status ``error``)."""

    def __init__(self, message: str, *, code: str = "SEND_TARGET", key: str | None = None) -> None:
        super().__init__(message, details={"code": code, **({"key": key} if key else {})})
        self.session_key = key


@dataclass(frozen=True)
class SendRequest:
    """One ``sessions_send`` call. ``requester_key`` None = an operator (REST, no guard)."""

    message: str
    requester_key: str | None = None
    requester_run_id: str | None = None
    tool_call_id: str | None = None
    session_key: str | None = None
    label: str | None = None
    agent_id: str | None = None
    timeout_s: int = DEFAULT_TIMEOUT_S
    sandboxed: bool = False
    requester_channel: str | None = None
    idempotency_key: str | None = None


@dataclass
class StartedSend:
    delivery: Delivery
    target_key: str
    run_id: str
    a2a_skipped: bool
    extra: dict[str, Any] = field(default_factory=dict)


# --- target resolution (spec-b §4.2) ----------------------------------------------------


def _cfg():
    from openclaw_site.config import get_config

    return get_config()


def send_target_resolve(*, request: SendRequest) -> str:
    """The canonical key the message goes to; raises for every §4.2 failure."""
    if request.session_key and request.session_key.strip():
        key = _resolve_reference(request.session_key.strip(), request)
    elif request.label and request.label.strip():
        key = _resolve_label(request.label.strip(), request)
    elif request.agent_id and request.agent_id.strip():
        key = _agent_main_key(request.agent_id)
    else:
        raise SendTargetError("Either sessionKey or label is required")
    if keys.is_thread_session_key(key):
        raise SendTargetError(THREAD_TARGET_ERROR, code="THREAD_TARGET", key=key)
    return key


def _agent_main_key(agent_id: str) -> str:
    cfg = _cfg()
    if not cfg.has_agent(agent_id):
        raise SendTargetError(f"agent not found: {agent_id.strip()}", code="AGENT_NOT_FOUND")
    return cfg.agent_main_session_key(keys.normalize_agent_id(agent_id))


def _looks_like_key(raw: str) -> bool:
    return ":" in raw or raw.lower() in ("global", "unknown")


def _resolve_reference(raw: str, request: SendRequest) -> str:
    return resolve_session_reference(raw=raw, requester_key=request.requester_key)


def resolve_session_reference(*, raw: str, requester_key: str | None) -> str:
    """A key (``main``, ``current``, relative or full) or a sessionId → the canonical key."""
    if raw.lower() == "current" and requester_key:
        return requester_key
    cfg = _cfg()
    if keys.classify_session_key_shape(raw) == "malformed_agent":
        raise SendTargetError(f"Session not found: {raw} (use the full sessionKey from sessions_list)", key=raw)
    canonical = keys.resolve_session_store_key(cfg=cfg, session_key=raw)
    if _looks_like_key(raw) or raw.lower() in ("main", cfg.main_key):
        _require_key_agent(canonical)
        return canonical
    if Session.objects.filter(key=canonical).exists():
        return canonical
    by_id = list(Session.objects.filter(session_id=raw).values_list("key", flat=True)[:2])
    if len(by_id) == 1:
        return by_id[0]
    raise SendTargetError(f"Session not found: {raw} (use the full sessionKey from sessions_list)", key=raw)


def _require_key_agent(key: str) -> None:
    parsed = keys.parse_agent_session_key(key)
    if parsed and not Session.objects.filter(key=key).exists() and not _cfg().has_agent(parsed.agent_id):
        raise SendTargetError(f"agent not found: {parsed.agent_id}", code="AGENT_NOT_FOUND", key=key)


def _resolve_label(label: str, request: SendRequest) -> str:
    requested_agent = keys.normalize_agent_id(request.agent_id) if request.agent_id else None
    requester_agent = keys.resolve_agent_id_from_session_key(request.requester_key) if request.requester_key else None
    if requester_agent and requested_agent and requested_agent != requester_agent:
        if request.sandboxed:
            raise SessionForbiddenError("Sandboxed sessions_send label lookup is limited to this agent")
        visibility = visibility_for(requester_key=request.requester_key, sandboxed=request.sandboxed)
        a2a_check(visibility=visibility, target_agent_id=requested_agent, action="send")
    found = _label_candidates(label, request, requested_agent)
    if len(found) == 1:
        return found[0]
    if not found and _delegated_to_another(label, request.requester_key):
        raise SessionForbiddenError(
            f'Label "{label}" names a hub-delegated worker of another session; only its owner can reach it.'
        )
    if request.sandboxed and request.requester_key:
        raise SessionForbiddenError("Session not visible from this sandboxed agent session.")
    if not found:
        raise SendTargetError(f"No session found with label: {label}", code="LABEL_NOT_FOUND")
    raise SendTargetError(
        f"Multiple sessions found with label: {label} ({', '.join(found)})", code="LABEL_AMBIGUOUS"
    )


def _label_candidates(label: str, request: SendRequest, agent_id: str | None) -> list[str]:
    """Workers delegated to the requester first (rule 4), then ordinary labelled sessions."""
    base = Session.objects.filter(label=label).exclude(key__regex=r"^agent:[^:]+:cron:[^:]+:run:[^:]+$")
    if agent_id:
        base = base.filter(agent_id=agent_id)
    if request.requester_key:
        owned = list(base.filter(label_scope=request.requester_key).values_list("key", flat=True)[:3])
        if owned:
            return owned
    ordinary = base.filter(label_scope="")
    if request.sandboxed and request.requester_key:
        ordinary = ordinary.filter(spawned_by=request.requester_key)
    return list(ordinary.order_by("key").values_list("key", flat=True)[:3])


def _delegated_to_another(label: str, requester_key: str | None) -> bool:
    """A hub-delegated worker of some other owner has this label (rule 4: owner only)."""
    others = Session.objects.filter(label=label).exclude(label_scope="")
    return (others.exclude(label_scope=requester_key) if requester_key else others).exists()


# --- guard and start ----------------------------------------------------------------------


def send_guard(*, request: SendRequest, target_key: str) -> Session:
    """Visibility, agent-to-agent and send policy of the target; returns the (maybe
    unsaved) target session. Nothing is written when a check fails."""
    from ..selectors import assert_send_allowed

    if request.requester_key:
        visibility = visibility_for(requester_key=request.requester_key, sandboxed=request.sandboxed)
        visibility_check(visibility=visibility, target_key=target_key, action="send")
    session = Session.objects.filter(key=target_key).first()
    if session is None:
        session = Session(key=target_key, agent_id=keys.resolve_agent_id_from_session_key(target_key))
    _refuse_closed_acp(session)
    policy_session = _policy_session(session)
    assert_send_allowed(policy_session)
    return session


def _refuse_closed_acp(session: Session) -> None:
    """A closed ACP worker never reopens on a follow-up (DESIGN §8 rule 4)."""
    if session.pk is not None and Session.objects.filter(pk=session.pk, acp__state="closed").exists():
        raise SendTargetError(f"ACP session {session.key} is closed", code="ACP_SESSION_CLOSED", key=session.key)


def _policy_session(session: Session) -> Session:
    """A run-scoped key is governed by its durable parent when the scoped row is gone."""
    if session.pk is None:
        scoped = split_run_scoped_key(session.key)
        parent = Session.objects.filter(key=scoped[0]).first() if scoped else None
        return parent or session
    return session


def send_start(*, request: SendRequest) -> StartedSend:
    """Resolve, guard and store the message (one durable ``send`` delivery)."""
    target_key = send_target_resolve(request=request)
    target = send_guard(request=request, target_key=target_key)
    plan = a2a.flow_plan(request=request, target=target)
    idempotency_key = request.idempotency_key or _idempotency_key(request)
    with transaction.atomic():
        delivery, _ = delivery_enqueue(
            kind=Delivery.Kind.SEND, source_session_key=request.requester_key or "",
            source_run_id=request.requester_run_id, target_session_key=target_key,
            payload=_payload(request, target_key, plan), idempotency_key=idempotency_key,
        )  # fmt: skip
    delivery.refresh_from_db()
    return StartedSend(delivery=delivery, target_key=target_key, run_id=_reader_run_id(delivery),
                       a2a_skipped=plan["skipped"])  # fmt: skip


def _idempotency_key(request: SendRequest) -> str:
    # A replayed tool call (an engine restarted mid-step) must not send twice.
    if request.requester_run_id and request.tool_call_id:
        return f"send:v1:{request.requester_run_id}:{request.tool_call_id}"
    return f"send:v1:{uuid.uuid4()}"


def _payload(request: SendRequest, target_key: str, plan: dict[str, Any]) -> dict[str, Any]:
    return {
        "text": request.message,
        "sourceTool": "sessions_send",
        "channel": "internal",
        "provenance": {"kind": "inter_session", "sourceSessionKey": request.requester_key,
                       "sourceChannel": request.requester_channel, "sourceTool": "sessions_send"},
        "extraSystemPrompt": a2a.message_context(requester_key=request.requester_key,
                                                 requester_channel=request.requester_channel, target_key=target_key),
        # inline: the waiting tool returns the reply; none (fire and forget): the reply
        # reaches the caller only through the agent-to-agent flow.
        "replyMode": "none" if request.timeout_s == 0 or not request.requester_key else "inline",
        "waitSeconds": request.timeout_s,
        "requesterAttempt": _attempt(request.requester_run_id),
        "a2a": plan,
    }  # fmt: skip


def _attempt(run_id: str | None) -> int | None:
    """The caller run's attempt now: a later attempt means the waiting tool died with it."""
    return Run.objects.filter(run_id=run_id).values_list("attempts", flat=True).first() if run_id else None


def _reader_run_id(delivery: Delivery) -> str:
    """The run that reads (or will read) the message: bound, started for it, or live."""
    if delivery.consumed_by_run_id:
        return delivery.consumed_by_run_id
    if delivery.target_run_id:
        return delivery.target_run_id
    started = Run.objects.filter(run_id__startswith=f"delivery:{delivery.delivery_id}:").order_by("-created_at").first()
    if started is not None:
        return started.run_id
    session = Session.objects.filter(key=delivery.target_session_key).first()
    return (session.active_run_id if session and session.active_run_id else None) or delivery.delivery_id


# --- waiting ------------------------------------------------------------------------------


def _switch_to_pingback(delivery_id: str) -> bool:
    """Soft timeout: from now on the reply goes back as a pingback. False if it already came."""
    delivery = Delivery.objects.get(delivery_id=delivery_id)
    payload = {**delivery.payload, "replyMode": "pingback", "softTimeout": True}
    return Delivery.objects.filter(pk=delivery.pk, reply__isnull=True).update(payload=payload) == 1


async def send_wait(*, delivery_id: str, timeout_s: float) -> tuple[Delivery, bool]:
    """Wait (bounded) for the reply of a delivery; ``(row, finished)``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(timeout_s, 0)
    pause = _POLL_START_S
    while True:
        delivery = await Delivery.objects.aget(delivery_id=delivery_id)
        if delivery.reply is not None or delivery.state in (Delivery.State.FAILED, Delivery.State.EXPIRED):
            return delivery, True
        remaining = deadline - loop.time()
        if remaining <= 0:
            return delivery, False
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * 2, _POLL_MAX_S)


def _delivery_info(delivery: Delivery, status: str, skipped: bool) -> dict[str, Any]:
    return {"status": "skipped" if skipped and status != "failed" else status, "id": delivery.delivery_id,
            "state": delivery.state, "mode": "announce"}  # fmt: skip


def finished_result(*, started: StartedSend, delivery: Delivery) -> dict[str, Any]:
    """The tool result once the reading run has ended (or the delivery failed)."""
    base = {"sessionKey": started.target_key}
    if delivery.state in (Delivery.State.FAILED, Delivery.State.EXPIRED):
        return {**base, "runId": started.run_id, "status": "error", "sentBeforeError": True,
                "error": delivery.last_error or f"delivery {delivery.state}",
                "delivery": _delivery_info(delivery, "failed", False)}  # fmt: skip
    reply = delivery.reply or {}
    run_id = reply.get("runId") or started.run_id
    status = reply.get("status")
    if status == Run.Status.OK:
        return {**base, "runId": run_id, "status": "ok", "reply": reply.get("text") or "",
                "delivery": _delivery_info(delivery, "delivered", started.a2a_skipped)}  # fmt: skip
    error = (reply.get("error") or {}).get("message") if isinstance(reply.get("error"), dict) else reply.get("error")
    wire = "timeout" if status == Run.Status.TIMEOUT else "error"
    return {**base, "runId": run_id, "status": wire, "error": error or ("timeout" if wire == "timeout" else "agent error"),
            "sentBeforeError": True, "delivery": _delivery_info(delivery, "delivered", started.a2a_skipped)}  # fmt: skip


def accepted_result(*, started: StartedSend, delivery: Delivery, fire_and_forget: bool) -> dict[str, Any]:
    if fire_and_forget:
        status = "sent"
    else:
        status = "accepted" if delivery.state == Delivery.State.CONSUMED else "pending"
    run_id = delivery.consumed_by_run_id or started.run_id
    return {"runId": run_id, "status": "accepted", "sessionKey": started.target_key,
            "delivery": _delivery_info(delivery, status, started.a2a_skipped)}  # fmt: skip


def follow_up_start(*, request: SendRequest) -> dict[str, Any] | None:
    """Fire and forget to the caller's own kept sub-agent (seed 003): a follow-up run of
    the child, announced back like its spawn; None for any other target."""
    from .subagents import subagent_follow_up

    if request.timeout_s > 0 or not request.requester_key:
        return None
    target_key = send_target_resolve(request=request)
    send_guard(request=request, target_key=target_key)
    run_id = (f"followup:v1:{request.requester_run_id}:{request.tool_call_id}"
              if request.requester_run_id and request.tool_call_id else None)  # fmt: skip
    result = subagent_follow_up(requester_session_key=request.requester_key, requester_run_id=request.requester_run_id,
                                child_session_key=target_key, message=request.message, run_id=run_id)  # fmt: skip
    if result is None:
        return None
    return {"runId": result["runId"], "status": "accepted", "sessionKey": target_key, "followUp": True,
            "delivery": {"status": "sent", "id": None, "mode": "followup"}}  # fmt: skip


async def session_send(*, request: SendRequest) -> dict[str, Any]:
    """Send, then wait per ``timeout_s``; returns the ``sessions_send`` result.

    Raises :class:`SendTargetError`, ``SessionForbiddenError`` or ``SendBlockedError``
    when the message could not be sent (nothing was written then).
    """
    follow_up = await sync_to_async(lambda: follow_up_start(request=request))()
    if follow_up is not None:
        return follow_up
    started = await sync_to_async(lambda: send_start(request=request))()
    if request.timeout_s <= 0:
        return accepted_result(started=started, delivery=started.delivery, fire_and_forget=True)
    delivery, finished = await send_wait(delivery_id=started.delivery.delivery_id, timeout_s=request.timeout_s)
    if not finished and await sync_to_async(_switch_to_pingback)(delivery.delivery_id):
        return accepted_result(started=started, delivery=delivery, fire_and_forget=False)
    if not finished:
        delivery = await Delivery.objects.aget(pk=delivery.pk)
    return finished_result(started=started, delivery=delivery)


def failure_result(error: Exception, *, session_key: str | None = None) -> dict[str, Any]:
    """A failed send as the tool shapes it: a fresh ``runId``, ``forbidden`` or ``error``."""
    status = "forbidden" if isinstance(error, SessionForbiddenError) else "error"
    result: dict[str, Any] = {"runId": str(uuid.uuid4()), "status": status, "error": getattr(error, "message", str(error))}
    key = session_key or getattr(error, "session_key", None) or ((getattr(error, "details", None) or {}).get("key"))
    if key:
        result["sessionKey"] = key
    return result

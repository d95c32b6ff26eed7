"""The agent-to-agent flow that follows a ``sessions_send`` reply (spec-b §4.7, §4.8).

Driven by replies, not by a waiting coroutine, so it survives restarts: when the run
that read a delivery ends, ``deliveries`` records its final text as the reply and calls
:func:`a2a_after_reply`, which takes the next step:

1. the round-one reply goes back to the caller: inline (the waiting tool returned it)
   or, after a soft wait timeout, as a ``pingback`` delivery bound to the caller's run
   (read at its next model step, or by the next turn of its durable session);
2. ping-pong, ``session.agentToAgent.maxPingPongTurns`` turns (0–5, default 5; 0 for
   isolated cron callers): turn 1 on the requester with the target's reply, turn 2 on
   the target, … each a dedicated turn (its own ``a2a`` run) reading one ``a2a``
   delivery; an empty reply or ``REPLY_SKIP`` stops;
3. the announce step on the target; ``ANNOUNCE_SKIP`` stays silent, any other reply is
   posted (it is the target's visible message; the reply is marked ``posted``).

Skipped (``delivery.status = skipped``): the caller's own native sub-agent when the
caller waits, and a parent-owned ACP or hub-delegated worker of the caller: those
report through their own completion path. Same-session sends stop after round one.
"""

from __future__ import annotations

import uuid
from typing import Any

from .. import keys
from ..models import Delivery, Run, Session

REPLY_SKIP = "REPLY_SKIP"
ANNOUNCE_SKIP = "ANNOUNCE_SKIP"
STOP_TOKENS = frozenset({REPLY_SKIP, ANNOUNCE_SKIP, "NO_REPLY"})
MAX_TURNS_CAP = 5
ANNOUNCE_MESSAGE = "Agent-to-agent announce step."
FIRE_AND_FORGET_ANNOUNCE_S = 30


def is_stop(text: str | None) -> bool:
    return not (text or "").strip() or (text or "").strip() in STOP_TOKENS


def max_ping_pong_turns(*, requester_key: str | None) -> int:
    """The configured turn cap clamped to 0–5; isolated cron requesters get 0."""
    from openclaw_site.config import get_config

    if not requester_key or keys.is_cron_session_key(requester_key):
        return 0
    return max(0, min(MAX_TURNS_CAP, int(get_config().agent_to_agent_max_ping_pong_turns)))


def message_context(*, requester_key: str | None, requester_channel: str | None, target_key: str) -> str:
    lines = ["Agent-to-agent message context:"]
    if requester_key:
        lines.append(f"Agent 1 (requester) session: {requester_key}.")
    if requester_channel:
        lines.append(f"Agent 1 (requester) channel: {requester_channel}.")
    lines.append(f"Agent 2 (target) session: {target_key}.")
    return "\n".join(lines)


def _owners(target: Session) -> set[str]:
    owners = {target.spawned_by, target.parent_session_key}
    if target.pk is not None:
        owners.update(Session.objects.filter(pk=target.pk).values_list("acp__owner_session_key", flat=True))
    return {owner for owner in owners if owner}


def _has_acp(target: Session) -> bool:
    return target.pk is not None and Session.objects.filter(pk=target.pk, acp__isnull=False).exists()


def skip_reason(*, requester_key: str | None, target: Session, waiting: bool) -> str | None:
    """Why the flow is skipped for this pair (ownership, not target type), or None."""
    if not requester_key or requester_key not in _owners(target):
        return None
    if _has_acp(target):
        return "parent-owned-acp"
    if waiting and keys.is_subagent_session_key(target.key):
        return "own-subagent"
    return None


def flow_plan(*, request, target: Session) -> dict[str, Any]:
    """The flow state stored on the ``send`` delivery (``payload.a2a``)."""
    reason = skip_reason(requester_key=request.requester_key, target=target, waiting=request.timeout_s != 0)
    timeout_s = request.timeout_s or FIRE_AND_FORGET_ANNOUNCE_S
    return {
        "flowId": str(uuid.uuid4()), "requesterKey": request.requester_key, "targetKey": target.key,
        "requesterChannel": request.requester_channel, "originalMessage": request.message,
        "maxTurns": max_ping_pong_turns(requester_key=request.requester_key),
        "enabled": bool(request.requester_key) and request.requester_key != target.key,
        "skipped": reason is not None, "skipReason": reason, "stepTimeoutS": timeout_s,
    }  # fmt: skip


# --- prompts ------------------------------------------------------------------------------


def reply_context(*, plan: dict[str, Any], turn: int, on_requester: bool) -> str:
    current = "Agent 1 (requester)" if on_requester else "Agent 2 (target)"
    lines = ["Agent-to-agent reply step:", f"Current agent: {current}.", f"Turn {turn} of {plan['maxTurns']}."]
    lines += _party_lines(plan)
    lines.append(f'If you want to stop the ping-pong, reply exactly "{REPLY_SKIP}".')
    return "\n".join(lines)


def announce_context(*, plan: dict[str, Any], round_one: str, latest: str) -> str:
    lines = ["Agent-to-agent announce step:", *_party_lines(plan), f"Original request: {plan['originalMessage']}",
             f"Round 1 reply: {round_one or '(not available).'}", f"Latest reply: {latest or '(not available).'}",
             f'If you want to remain silent, reply exactly "{ANNOUNCE_SKIP}".',
             "Any other reply will be posted to the target channel.",
             "After this reply, the agent-to-agent conversation is over."]  # fmt: skip
    return "\n".join(lines)


def _party_lines(plan: dict[str, Any]) -> list[str]:
    lines = []
    if plan.get("requesterKey"):
        lines.append(f"Agent 1 (requester) session: {plan['requesterKey']}.")
    if plan.get("requesterChannel"):
        lines.append(f"Agent 1 (requester) channel: {plan['requesterChannel']}.")
    lines.append(f"Agent 2 (target) session: {plan['targetKey']}.")
    return lines


# --- steps --------------------------------------------------------------------------------


def a2a_after_reply(delivery: Delivery, run: Run) -> None:
    """Advance the flow of ``delivery`` whose reply was just recorded."""
    plan = (delivery.payload or {}).get("a2a")
    if not isinstance(plan, dict):
        return
    step = plan.get("step")
    if delivery.kind == Delivery.Kind.SEND and step is None:
        _after_round_one(delivery, plan)
    elif step == "reply":
        _after_reply_step(delivery, plan)
    elif step == "announce":
        _mark_announce(delivery)


def _waiter_gone(delivery: Delivery) -> bool:
    """The tool that waits inline for this reply died with its engine (the caller's run
    ended, or was taken over by another engine since the send)."""
    if not delivery.source_run_id:
        return False
    run = Run.objects.filter(run_id=delivery.source_run_id).first()
    expected = delivery.payload.get("requesterAttempt")
    return run is None or run.status != Run.Status.RUNNING or (expected is not None and run.attempts != expected)


def _after_round_one(delivery: Delivery, plan: dict[str, Any]) -> None:
    reply = delivery.reply or {}
    mode = delivery.payload.get("replyMode")
    if mode == "pingback" or (mode == "inline" and _waiter_gone(delivery)):
        _pingback(delivery)
    text = (reply.get("text") or "").strip()
    if reply.get("status") != Run.Status.OK or is_stop(text) or not plan.get("enabled") or plan.get("skipped"):
        return
    plan = {**plan, "roundOneReply": text}
    if plan["maxTurns"] > 0:
        _reply_step(plan, turn=1, incoming=text)
    else:
        _announce_step(plan, latest=text)


def _after_reply_step(delivery: Delivery, plan: dict[str, Any]) -> None:
    reply = delivery.reply or {}
    text = (reply.get("text") or "").strip()
    stopped = reply.get("status") != Run.Status.OK or is_stop(text)
    latest = plan.get("incoming", "") if stopped else text
    if stopped or plan["turn"] >= plan["maxTurns"]:
        _announce_step(plan, latest=latest)
    else:
        _reply_step(plan, turn=plan["turn"] + 1, incoming=text)


def _mark_announce(delivery: Delivery) -> None:
    reply = delivery.reply or {}
    text = (reply.get("text") or "").strip()
    posted = reply.get("status") == Run.Status.OK and not is_stop(text)
    Delivery.objects.filter(pk=delivery.pk).update(reply={**reply, "posted": posted, "silent": not posted})


def _reply_step(plan: dict[str, Any], *, turn: int, incoming: str) -> None:
    on_requester = turn % 2 == 1
    on_key = plan["requesterKey"] if on_requester else plan["targetKey"]
    source_key = plan["targetKey"] if on_requester else plan["requesterKey"]
    text = f"{reply_context(plan=plan, turn=turn, on_requester=on_requester)}\n\n{incoming}"
    step_plan = {**plan, "step": "reply", "turn": turn, "incoming": incoming}
    _dedicated_step(plan=step_plan, on_key=on_key, source_key=source_key, text=text, name=f"turn:{turn}")


def _announce_step(plan: dict[str, Any], *, latest: str) -> None:
    context = announce_context(plan=plan, round_one=plan.get("roundOneReply", ""), latest=latest)
    step_plan = {**plan, "step": "announce", "latestReply": latest}
    _dedicated_step(plan=step_plan, on_key=plan["targetKey"], source_key=plan["requesterKey"] or "",
                    text=f"{context}\n\n{ANNOUNCE_MESSAGE}", name="announce")  # fmt: skip


def _dedicated_step(*, plan: dict[str, Any], on_key: str, source_key: str, text: str, name: str) -> None:
    """One step = its own ``a2a`` run reading one delivery (no live turn picks it up)."""
    from .deliveries import delivery_enqueue_with_turn, split_run_scoped_key

    scoped = split_run_scoped_key(on_key)
    on_key = scoped[0] if scoped else on_key  # steps never land on a run-scoped session
    flow = plan["flowId"]
    delivery_enqueue_with_turn(
        kind=Delivery.Kind.A2A, source_session_key=source_key, target_session_key=on_key,
        payload={"text": text, "a2a": plan, "sourceTool": "sessions_send"}, idempotency_key=f"a2a:v1:{flow}:{name}",
        run_id=f"a2a:{flow}:{name}", timeout_s=int(plan.get("stepTimeoutS") or FIRE_AND_FORGET_ANNOUNCE_S),
    )  # fmt: skip


def _pingback(delivery: Delivery) -> None:
    """The delayed reply of a soft-timed-out send, back to the caller (its run, or its session)."""
    from .deliveries import delivery_enqueue

    if not delivery.source_session_key:
        return
    reply = delivery.reply or {}
    if reply.get("status") == Run.Status.OK:
        body = f"Reply from {delivery.target_session_key} to your sessions_send (delivery {delivery.delivery_id}):\n{reply.get('text') or ''}"
    else:
        error = reply.get("error") or {}
        message = error.get("message") if isinstance(error, dict) else error
        body = (f"sessions_send to {delivery.target_session_key} (delivery {delivery.delivery_id}) ended "
                f"{reply.get('status')}: {message or 'no reply'}")  # fmt: skip
    delivery_enqueue(
        kind=Delivery.Kind.PINGBACK, source_session_key=delivery.target_session_key, source_run_id=reply.get("runId"),
        target_session_key=delivery.source_session_key, target_run_id=delivery.source_run_id,
        payload={"text": body, "inReplyTo": delivery.delivery_id, "replyStatus": reply.get("status")},
        idempotency_key=f"pingback:v1:{delivery.delivery_id}",
    )  # fmt: skip


def _register() -> None:
    from .deliveries import on_delivery_reply

    on_delivery_reply(a2a_after_reply)


_register()

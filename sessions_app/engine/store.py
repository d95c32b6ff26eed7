"""The engine's database side (sync; the engine calls it through ``sync_to_async``).

Claims and leases: a run is claimed with a conditional ``UPDATE … WHERE
status='queued'`` (rows locked with ``SKIP LOCKED`` on PostgreSQL), together with its
session lane (``Session.active_run_id`` set only where it is NULL), so a run executes
once and a session runs one turn at a time. Leases are renewed while a run executes; a
running run whose lease expired is taken over by another engine (``attempts`` + 1) or,
after two attempts, ended ``error``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from ..models import Run, Session, TranscriptEntry
from ..events import event_batch
from ..services import run_events, run_hooks
from ..services.chat import COLLECT, collect_absorb, steer_drain
from ..services.inbox import inbox_drain
from ..services.sessions import transcript_append

logger = logging.getLogger(__name__)
MAX_ATTEMPTS = 2
CANDIDATES = 500


def _lease_until(lease_s: float) -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=lease_s)


# --- claims and leases ---------------------------------------------------------------


def claim_runs(*, owner: str, limit: int, lease_s: float) -> list[tuple[int, str]]:
    """Claim up to ``limit`` due queued runs, the oldest of each free session lane first;
    returns ``(pk, run_id)`` pairs."""
    claimed: list[tuple[int, str]] = []
    with transaction.atomic():
        seen: set[int | None] = set()
        for run in _candidates():
            if len(claimed) >= limit:
                break
            if run.session_id is not None and run.session_id in seen:
                continue
            seen.add(run.session_id)
            if run.not_before and run.not_before > timezone.now():
                continue
            if _claim_one(run, owner=owner, lease_s=lease_s):
                claimed.append((run.pk, run.run_id))
    return claimed


def _candidates():
    runs = Run.objects.filter(status=Run.Status.QUEUED).filter(
        Q(session__isnull=True) | Q(session__active_run_id__isnull=True)
    ).order_by("created_at", "id").only("id", "run_id", "session_id", "not_before")
    if connection.vendor == "postgresql":
        runs = runs.select_for_update(skip_locked=True, of=("self",))
    return runs[:CANDIDATES]


def _claim_one(run: Run, *, owner: str, lease_s: float) -> bool:
    if run.session_id is not None:
        locked = Session.objects.filter(pk=run.session_id, active_run_id__isnull=True).update(
            active_run_id=run.run_id, state=Session.State.BUSY)
        if not locked:
            return False
    now = timezone.now()
    taken = Run.objects.filter(pk=run.pk, status=Run.Status.QUEUED).update(
        status=Run.Status.RUNNING, lease_owner=owner, lease_expires_at=_lease_until(lease_s),
        attempts=F("attempts") + 1, started_at=now,
    )  # fmt: skip
    if not taken and run.session_id is not None:
        _release_lane(run.session_id, run.run_id)
    return bool(taken)


def _release_lane(session_pk: int, run_id: str) -> None:
    Session.objects.filter(pk=session_pk, active_run_id=run_id).update(active_run_id=None, state=Session.State.IDLE)


def recover_expired(*, owner: str, limit: int, lease_s: float, exclude_pks: list[int] = ()) -> list[tuple[int, str]]:
    """Take over running runs whose lease expired (but ``exclude_pks``, the caller's own
    live turns); end those attempted twice ``error``."""
    taken: list[tuple[int, str]] = []
    expired = Run.objects.lease_expired().exclude(pk__in=list(exclude_pks)).order_by("lease_expires_at")[:limit]
    for run in list(expired):
        if run.attempts >= MAX_ATTEMPTS:
            _give_up(run)
            continue
        with transaction.atomic():
            if Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING, lease_owner=run.lease_owner,
                                  lease_expires_at=run.lease_expires_at).update(
                lease_owner=owner, lease_expires_at=_lease_until(lease_s), attempts=F("attempts") + 1,
            ):  # fmt: skip
                if run.session_id is not None:
                    Session.objects.filter(pk=run.session_id).update(active_run_id=run.run_id, state=Session.State.BUSY)
                taken.append((run.pk, run.run_id))
                logger.warning("took over run %s from %s (attempt %s)", run.run_id, run.lease_owner, run.attempts + 1)
    return taken


def _give_up(run: Run) -> None:
    error = {"code": "ENGINE_LOST", "message": f"the run was lost {run.attempts} times (its engine died); giving up"}
    with transaction.atomic():
        if Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING, lease_owner=run.lease_owner).update(
            status=Run.Status.ERROR, error=error, ended_at=timezone.now(), lease_expires_at=None,
        ):  # fmt: skip
            run.refresh_from_db()
            _after_terminal(run, text="", stop_reason="error", error_message=error["message"], seqs=(1, 1))
            # Like every terminal transition: the run-finished hooks once, after commit.
            transaction.on_commit(lambda: run_hooks.run_finished(run))


def renew_leases(*, owner: str, run_pks: list[int], lease_s: float) -> set[int]:
    """Extend the leases of this engine's runs; returns the pks it no longer holds."""
    if not run_pks:
        return set()
    mine = Run.objects.filter(pk__in=run_pks, status=Run.Status.RUNNING, lease_owner=owner)
    mine.update(lease_expires_at=_lease_until(lease_s))
    return set(run_pks) - set(mine.values_list("pk", flat=True))


def abort_requested(*, run_pks: list[int]) -> list[int]:
    if not run_pks:
        return []
    return list(Run.objects.filter(pk__in=run_pks, abort_requested=True).values_list("pk", flat=True))


def release_for_shutdown(*, run_pk: int, owner: str) -> None:
    """Put an interrupted run back in the queue (graceful stop; not counted as an attempt)."""
    with transaction.atomic():
        run = Run.objects.filter(pk=run_pk, status=Run.Status.RUNNING, lease_owner=owner).first()
        if run is None:
            return
        Run.objects.filter(pk=run_pk).update(status=Run.Status.QUEUED, lease_owner=None, lease_expires_at=None,
                                             attempts=max(0, run.attempts - 1))  # fmt: skip
        if run.session_id is not None:
            _release_lane(run.session_id, run.run_id)


# --- one turn ------------------------------------------------------------------------


@dataclass
class TurnState:
    run: Run
    session: Session | None
    inputs: list[dict[str, Any]]
    nothing_new: bool = False  # a delivery turn with nothing to read: no model call
    is_acp: bool = False  # an ACP-backed session: its harness answers, not the model


def turn_begin(*, run_pk: int) -> TurnState:
    """Load the run; coalesce collect runs; append its input to the transcript."""
    run = Run.objects.select_related("session").get(pk=run_pk)
    session = run.session
    if session is None:
        return TurnState(run=run, session=None, inputs=[run.input])
    from acp_app.models import AcpSession

    inputs = collect_absorb(session=session, run=run) if run.input.get("queueMode") == COLLECT else [run.input]
    is_acp = AcpSession.objects.filter(session_id=session.pk).exists()
    return TurnState(run=run, session=session, inputs=inputs, is_acp=is_acp)


def start_turn(*, state: TurnState) -> list[dict[str, Any]]:
    """``sessions.changed`` start, the inbox and the input into the transcript; returns
    the tool calls an earlier attempt of the run left without a result."""
    run_events.publish_sessions_changed(session=state.session, phase="start", run=state.run)
    record_inputs(state=state)
    return [] if state.is_acp or state.nothing_new else pending_tool_calls(state=state)


def record_inputs(*, state: TurnState) -> None:
    """Drain the inbox, then append the run's user message(s) (idempotent per run)."""
    session, run = state.session, state.run
    prepare_step(state=state, steer=False)
    for index, item in enumerate(state.inputs):
        text = _input_text(item)
        if not text:
            continue
        key = f"{item.get('runId', run.run_id)}:input"
        transcript_append(session=session, role="user", content=text, run_id=run.run_id,
                          provenance=_input_provenance(item, run), idempotency_key=key)  # fmt: skip
    state.nothing_new = _nothing_new(state)


def _nothing_new(state: TurnState) -> bool:
    """A turn started for a delivery that another turn already read: nothing of this run
    is in the transcript (no input, nothing drained, now or in an earlier attempt)."""
    if state.run.input.get("source") != "delivery":
        return False
    return not TranscriptEntry.objects.filter(session=state.session, run_id=state.run.run_id).exists()


def _input_text(item: dict[str, Any]) -> str:
    text = str(item.get("message") or "")
    summary = item.get("droppedSummary")
    if summary:
        text = "[Queued messages dropped while the session was busy]\n" + "\n".join(summary) + "\n\n" + text
    return text


def _input_provenance(item: dict[str, Any], run: Run) -> dict[str, Any]:
    provenance = dict(item.get("inputProvenance") or {})
    if item.get("runId") and item["runId"] != run.run_id:
        provenance["collectedFrom"] = item["runId"]
    return provenance


def prepare_step(*, state: TurnState, steer: bool = True) -> None:
    """Before a model step: drain system events + deliveries, then steered messages."""
    if state.session is None:
        return
    for message in inbox_drain(session=state.session, run=state.run):
        logger.debug("run %s drained %s", state.run.run_id, message.get("provenance"))
    if steer:
        steer_drain(session=state.session, run=state.run)


def model_messages(*, state: TurnState, prepare: bool = False) -> list[dict[str, Any]]:
    """The messages of the next model step (``prepare``: drain the inbox and steered
    messages first, as before every step but the first)."""
    from .context import build_messages

    if prepare:
        prepare_step(state=state)
    state.session.refresh_from_db(fields=["session_id"])
    return build_messages(session=state.session, run=state.run)


def record_assistant(*, state: TurnState, text: str, calls: list[dict[str, Any]], usage: dict[str, int],
                     stop_reason: str, provider: str, model: str) -> None:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    content += [{"type": "toolCall", **call} for call in calls]
    if not content:
        return
    transcript_append(session=state.session, role="assistant", content=content, run_id=state.run.run_id,
                      usage=usage, stop_reason=stop_reason, provider=provider, model=model)  # fmt: skip


def pending_tool_calls(*, state: TurnState) -> list[dict[str, Any]]:
    """The tool calls this run recorded without a result: its engine died between a step's
    calls and their results. A resumed turn runs them before asking the model again, so
    no call (a ``sessions_send``, a spawn) is silently dropped; sends are idempotent per
    run and call id."""
    if state.session is None:
        return []
    calls: dict[str, dict[str, Any]] = {}
    answered: set[str] = set()
    rows = TranscriptEntry.objects.filter(session=state.session, run_id=state.run.run_id, archived=False,
                                          role__in=("assistant", "tool")).order_by("seq")  # fmt: skip
    for entry in rows:
        for block in entry.content or []:
            if block.get("type") == "toolCall":
                calls[block["id"]] = block
            elif block.get("type") == "toolResult":
                answered.add(block.get("toolCallId"))
    return [call for call_id, call in calls.items() if call_id not in answered]


def record_tool_result(*, state: TurnState, call: dict[str, Any], result_text: str, is_error: bool) -> None:
    block = {"type": "toolResult", "toolCallId": call["id"], "toolName": call["name"], "isError": is_error,
             "text": result_text}  # fmt: skip
    transcript_append(session=state.session, role="tool", content=[block], run_id=state.run.run_id,
                      provenance={"toolCallId": call["id"], "toolName": call["name"]})  # fmt: skip


def finish_run(*, run_pk: int, owner: str, status: str, text: str, stop_reason: str, usage: dict[str, int],
               error: dict[str, Any] | None = None, seqs: tuple[int, int] = (1, 1)) -> Run | None:
    """Record the terminal state (only if this engine still holds the run), free the lane,
    add the usage to the session and publish the closing events."""
    with event_batch():
        done = Run.objects.filter(pk=run_pk, status=Run.Status.RUNNING, lease_owner=owner).update(
            status=status, output={"text": text, "stopReason": stop_reason}, error=error, usage=usage,
            ended_at=timezone.now(), lease_expires_at=None,
        )  # fmt: skip
        if not done:
            return None
        run = Run.objects.select_related("session").get(pk=run_pk)
        _add_usage(run, usage, aborted=status == Run.Status.ABORTED)
        _after_terminal(run, text=text, stop_reason=stop_reason, error_message=(error or {}).get("message"), seqs=seqs)
    return run


def _add_usage(run: Run, usage: dict[str, int], *, aborted: bool) -> None:
    if run.session_id is None:
        return
    Session.objects.filter(pk=run.session_id).update(
        input_tokens=F("input_tokens") + usage.get("inputTokens", 0),
        output_tokens=F("output_tokens") + usage.get("outputTokens", 0),
        total_tokens=F("total_tokens") + usage.get("totalTokens", 0),
        aborted_last_run=aborted, system_sent=True, updated_at=timezone.now(),
    )  # fmt: skip


def _after_terminal(run: Run, *, text: str, stop_reason: str, error_message: str | None,
                    seqs: tuple[int, int]) -> None:
    """Free the lane and publish chat final|aborted|error, lifecycle end|error and
    sessions.changed (``seqs``: the next chat and agent seq of the run)."""
    session = run.session
    if session is None:
        return
    _release_lane(session.pk, run.run_id)
    from ..events import notify_engines

    notify_engines(run.run_id)  # the lane is free: the next queued run of the session may start
    chat_state = {Run.Status.OK: "final", Run.Status.ABORTED: "aborted"}.get(run.status, "error")
    run_events.publish_chat(
        session=session, run_id=run.run_id, seq=seqs[0], state=chat_state,
        message=run_events.assistant_message(text) if text else None, stopReason=stop_reason,
        errorMessage=error_message if chat_state == "error" else None, usage=run.usage or None,
    )  # fmt: skip
    run_events.publish_agent(session=session, run_id=run.run_id, seq=seqs[1], stream="lifecycle",
                             data=_lifecycle_end(run, stop_reason, error_message))  # fmt: skip
    phase = "error" if run.status == Run.Status.ERROR else "end"
    run_events.publish_sessions_changed(session=session, phase=phase, run=run)


def _lifecycle_end(run: Run, stop_reason: str, error_message: str | None) -> dict[str, Any]:
    """``end`` (``aborted: true`` for aborted and timed-out runs) or ``error``."""
    data: dict[str, Any] = {"phase": "error" if run.status == Run.Status.ERROR else "end",
                            "startedAt": _ms(run.started_at), "endedAt": _ms(run.ended_at), "stopReason": stop_reason}
    if run.status in (Run.Status.ABORTED, Run.Status.TIMEOUT):
        data["aborted"] = True
    if run.status == Run.Status.TIMEOUT:
        data["timedOut"] = True
    if error_message:
        data["error"] = error_message
    return data


def _ms(value: dt.datetime | None) -> int | None:
    return int(value.timestamp() * 1000) if value else None

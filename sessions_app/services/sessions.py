"""Session rows and transcripts: create, patch, reset, delete, append, inject (spec-a §2).

Every function takes client-supplied keys and canonicalises them
(``selectors.canonical_key``). Each mutation publishes ``sessions.changed``
``{sessionKey, agentId, reason, ts, session}`` to ``events.SESSIONS_GROUP`` after commit;
each transcript append publishes ``session.message`` through
``events.publish_session_event`` (numbered per session).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Mapping

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from .. import keys
from ..events import SESSIONS_GROUP, event_batch, now_ms, publish_on_commit, publish_session_event
from ..exceptions import (
    AgentMismatchError,
    InvalidSessionPatchError,
    LabelInUseError,
    MainSessionDeleteError,
    SessionExistsError,
    SessionNotFoundError,
    UnknownAgentError,
    UnknownParentSessionError,
)
from ..models import Run, Session, TranscriptEntry, new_uuid
from ..selectors import assert_send_allowed, canonical_key, is_main_session_key
from ..serializers import message_row, session_row
from .session_patch import SessionPatch, apply_patch, parse_label

INJECT_MAX_BYTES = 100 * 1024
INJECTED_USAGE = {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 0}

__all__ = [
    "INJECT_MAX_BYTES",
    "SessionPatch",
    "chat_inject",
    "parse_label",
    "session_create",
    "session_delete",
    "session_ensure",
    "session_patch",
    "session_reset",
    "transcript_append",
    "truncate_for_inject",
]


def _config():
    from openclaw_site.config import get_config

    return get_config()


def _kind_for(key: str, *, main_key: str) -> str:
    return keys.classify_session_kind(key, main_key=main_key)


def publish_session_changed(session: Session, *, reason: str, row: dict[str, Any] | None = None) -> None:
    """``sessions.changed`` for subscribers, after the current transaction commits."""
    payload = {
        "sessionKey": session.key, "agentId": session.agent_id, "reason": reason, "ts": now_ms(),
        "session": row if row is not None else session_row(session),
    }  # fmt: skip
    publish_on_commit(SESSIONS_GROUP, "sessions.changed", payload)


# --- creation ----------------------------------------------------------------------------


def session_ensure(*, key: str, agent_id: str | None = None, defaults: dict[str, Any] | None = None) -> tuple[Session, bool]:
    """Get the session with canonical ``key``, creating it lazily (OpenClaw §2.3).

    ``key`` must already be canonical (``keys.resolve_session_store_key``). Safe under
    concurrency: a racing creator loses the unique constraint and reads the winner.
    A new row publishes ``sessions.changed`` (reason ``create``).
    """
    existing = Session.objects.filter(key=key).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            session = Session.objects.create(**_new_fields(key, agent_id, defaults))
    except IntegrityError:
        return Session.objects.get(key=key), False
    publish_session_changed(session, reason="create")
    return session, True


def _new_fields(key: str, agent_id: str | None, defaults: dict[str, Any] | None) -> dict[str, Any]:
    now = timezone.now()
    return {
        "key": key,
        "agent_id": agent_id or keys.resolve_agent_id_from_session_key(key),
        "kind": _kind_for(key, main_key=_config().main_key),
        "updated_at": now,
        "session_started_at": now,
        **(defaults or {}),
    }


def session_create(
    *,
    key: str | None = None,
    agent_id: str | None = None,
    label: str | None = None,
    model: str | None = None,
    parent_session_key: str | None = None,
    envelope: dict[str, Any] | None = None,
) -> Session:
    """Create a session explicitly (``sessions.create``); without a key it is a dashboard
    session ``agent:<agent>:dashboard:<uuid>``. Refuses an existing key, an unknown agent or
    parent, and a label another session of the agent already has."""
    agent, canonical = _create_target(key, agent_id)
    fields: dict[str, Any] = {"label": parse_label(label) if label is not None else None}
    if parent_session_key:
        fields["parent_session_key"] = _existing_key(parent_session_key)
    with transaction.atomic():
        session = Session(**_new_fields(canonical, agent, fields))
        changes: SessionPatch = {"model": model} if model else {}
        if envelope is not None:
            changes["envelope"] = envelope
        apply_patch(session, changes)
        _insert(session)
        publish_session_changed(session, reason="create")
    return session


def _create_target(key: str | None, agent_id: str | None) -> tuple[str, str]:
    cfg = _config()
    wanted = keys.normalize_agent_id(agent_id) if agent_id else None
    if not key:
        agent = wanted or cfg.default_agent_id()
        _require_agent(agent)
        return agent, f"agent:{agent}:dashboard:{uuid.uuid4()}"
    canonical = canonical_key(key, method="sessions.create")
    parsed = keys.parse_agent_session_key(canonical)
    agent = keys.normalize_agent_id(parsed.agent_id) if parsed else (wanted or cfg.default_agent_id())
    if wanted and wanted != agent:
        raise AgentMismatchError(canonical, agent, wanted)
    _require_agent(agent)
    return agent, canonical


def _require_agent(agent_id: str) -> None:
    if not _config().has_agent(agent_id):
        raise UnknownAgentError(agent_id)


def _existing_key(raw: str) -> str:
    canonical = canonical_key(raw)
    if not Session.objects.filter(key=canonical).exists():
        raise UnknownParentSessionError(canonical)
    return canonical


def _insert(session: Session) -> None:
    try:
        with transaction.atomic():
            session.save(force_insert=True)
    except IntegrityError as error:
        if Session.objects.filter(key=session.key).exists():
            raise SessionExistsError(session.key) from error
        raise LabelInUseError(session.label or "") from error


def _save(session: Session) -> None:
    """Save a changed row; the label constraint turns a duplicate into ``LabelInUseError``."""
    try:
        with transaction.atomic():
            session.save()
    except IntegrityError as error:
        raise LabelInUseError(session.label or "") from error


def _lock_or_create(key: str) -> tuple[Session, bool]:
    """Inside a transaction: the locked row of ``key``, inserted first if missing."""
    session = Session.objects.select_for_update().filter(key=key).first()
    if session is not None:
        return session, False
    try:
        with transaction.atomic():
            return Session.objects.create(**_new_fields(key, None, None)), True
    except IntegrityError:
        return Session.objects.select_for_update().get(key=key), False


# --- patch, reset, delete ------------------------------------------------------------------


def session_patch(*, key: str, changes: Mapping[str, Any]) -> Session:
    """Apply a ``sessions.patch`` (absent = keep, null = clear); a missing key is created
    first. All-or-nothing: a refused field leaves the row (and its creation) untouched."""
    canonical = canonical_key(key, method="sessions.patch")
    with transaction.atomic():
        session, _ = _lock_or_create(canonical)
        _guard_delegate_lineage(session, changes)
        apply_patch(session, changes)
        session.updated_at = max(session.updated_at, timezone.now())
        _save(session)
        publish_session_changed(session, reason="patch")
    return session


def _guard_delegate_lineage(session: Session, changes: Mapping[str, Any]) -> None:
    """A hub-delegated worker (``label_scope`` = its owner) keeps its owner's lineage; its
    label stays unique per owner through the ``session_delegate_label_unique_per_owner``
    constraint, so a patch can neither re-parent it nor duplicate a sibling's label."""
    if not session.label_scope or changes.get("spawnedBy") in (None, session.label_scope):
        return
    raise InvalidSessionPatchError(
        "hubDelegated lineage mismatch: spawnedBy must match hubDelegated.ownerSessionKey", field="spawnedBy"
    )


def session_reset(*, key: str, reason: str = "reset") -> Session:
    """Start a new transcript (``sessions.reset``, ``/new``): stop the session's runs, archive
    its messages, rotate ``sessionId``, zero the counters, keep the user's settings."""
    canonical = canonical_key(key, method="sessions.reset")
    with transaction.atomic():
        session, _ = _lock_or_create(canonical)
        _abort_session_runs(session, reason=f"session {reason}")
        TranscriptEntry.objects.filter(session=session, archived=False).update(archived=True)
        _rotate(session)
        session.save()
        publish_session_changed(session, reason=reason)
    return session


def _rotate(session: Session) -> None:
    now = timezone.now()
    session.session_id = new_uuid()
    session.updated_at = session.session_started_at = now
    session.system_sent = session.aborted_last_run = False
    session.input_tokens = session.output_tokens = session.total_tokens = 0
    session.extra = {**(session.extra or {}), "totalTokensFresh": True}
    session.model = session.model_provider = None
    session.status = session.started_at = session.ended_at = None
    if session.model_override_source not in (None, "user"):
        session.model_override = session.provider_override = session.model_override_source = None


def _abort_session_runs(session: Session, *, reason: str) -> list[str]:
    """Stop the session's runs through the abort service (``chat.run_abort``: the chat
    ``aborted`` event, the engine notice, the run-finished hooks): queued ones end
    ``aborted``, then running ones are asked to stop. Returns the ids aborted."""
    from .chat import run_abort

    active = list(Run.objects.active().filter(Q(session=session) | Q(session_key=session.key)))
    for run in active:
        if run.session_id == session.pk:
            run.session = session  # the caller saves this instance: it must see the events' seq
    ordered = sorted(active, key=lambda run: (run.status != Run.Status.QUEUED, run.created_at, run.pk))
    return [run.run_id for run in ordered if run_abort(run=run, reason=reason)]


def session_delete(*, key: str, delete_transcript: bool = True) -> dict[str, Any]:
    """Remove a session (``sessions.delete``); the agent's main session is refused. Its runs
    are stopped and every transcript is archived to a JSONL file before the row goes."""
    canonical = canonical_key(key, method="sessions.delete")
    if is_main_session_key(canonical, agent_id=keys.resolve_agent_id_from_session_key(canonical)):
        raise MainSessionDeleteError(canonical)
    with transaction.atomic():
        session = Session.objects.select_for_update().filter(key=canonical).first()
        if session is None:
            return {"ok": True, "key": canonical, "deleted": False, "archived": []}
        _abort_session_runs(session, reason="session deleted")
        archived = _archive_transcripts(session)
        row = session_row(session)
        session.delete()
        publish_session_changed(session, reason="delete", row=row)
    return {"ok": True, "key": canonical, "deleted": True, "archived": archived}


def _archive_transcripts(session: Session) -> list[str]:
    """Write each transcript of the session to ``<state>/agents/<agent>/sessions/<id>.jsonl.deleted.<ts>``."""
    folder = Path(settings.OPENCLAW_STATE_DIR) / "agents" / session.agent_id / "sessions"
    paths = []
    entries = TranscriptEntry.objects.filter(session=session).order_by("seq")
    for transcript_id in dict.fromkeys(entries.values_list("transcript_id", flat=True)):
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{transcript_id}.jsonl.deleted.{now_ms()}"
        header = {"type": "session", "version": 1, "id": transcript_id, "key": session.key}
        lines = [header] + [
            {"type": "message", "id": e.message_id, "message": message_row(e)}
            for e in entries.filter(transcript_id=transcript_id)
        ]
        path.write_text("".join(json.dumps(line, default=str) + "\n" for line in lines), encoding="utf-8")
        paths.append(str(path))
    return paths


# --- transcripts -----------------------------------------------------------------------------


def transcript_append(
    *,
    session: Session,
    role: str,
    content: list[dict[str, Any]] | str,
    run_id: str | None = None,
    provenance: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    usage: dict[str, Any] | None = None,
    stop_reason: str = "",
    model: str = "",
    provider: str = "",
) -> TranscriptEntry:
    """Append one message to the session's current transcript (seq is per session) and
    publish ``session.message`` after commit.

    With an ``idempotency_key`` a replay returns the entry already written (no event).
    """
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if idempotency_key:
        existing = TranscriptEntry.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
    with event_batch():
        # Lock the session row: seq allocation must not race with another writer.
        locked = Session.objects.select_for_update().get(pk=session.pk)
        last = TranscriptEntry.objects.filter(session=locked).aggregate(m=Max("seq"))["m"] or 0
        entry = TranscriptEntry.objects.create(
            session=locked, transcript_id=locked.session_id, seq=last + 1, role=role, content=content,
            run_id=run_id, provenance=provenance or {}, idempotency_key=idempotency_key, usage=usage or {},
            stop_reason=stop_reason, model=model, provider=provider,
        )  # fmt: skip
        now = timezone.now()
        Session.objects.filter(pk=locked.pk).update(updated_at=now, last_interaction_at=now)
        locked.updated_at = locked.last_interaction_at = now
        _publish_message(locked, entry)
    return entry


def _publish_message(session: Session, entry: TranscriptEntry) -> None:
    payload = {
        "sessionKey": session.key, "agentId": session.agent_id, "message": message_row(entry),
        "messageId": entry.message_id, "messageSeq": entry.seq, "session": session_row(session),
    }  # fmt: skip
    publish_session_event(session, "session.message", payload)


def truncate_for_inject(text: str, *, limit: int = INJECT_MAX_BYTES) -> str:
    """``text`` if it fits ``limit`` UTF-8 bytes, else its head and a visible
    ``[truncated: …]`` notice, together within ``limit``."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    head = raw[: limit - 160].decode("utf-8", "ignore")
    omitted = len(raw) - len(head.encode("utf-8"))
    return f"{head}\n\n[truncated: {omitted} of {len(raw)} bytes omitted; injected messages keep {limit // 1024} KB]"


def chat_inject(
    *,
    key: str,
    message: str,
    label: str | None = None,
    agent_id: str | None = None,
    create_if_missing: bool = False,
) -> TranscriptEntry:
    """Append an assistant note without running a model (``chat.inject``).

    The session's send policy is enforced as for ``chat.send`` (``send blocked by session
    policy``); ``create_if_missing`` creates a missing session, otherwise ``session not
    found``. Content over 100 KB is truncated with a notice. Publishes ``session.message``
    and a ``chat`` final event ``{runId: "inject-<messageId>", seq: 0, state: "final"}``.
    """
    canonical = canonical_key(key, method="chat.inject")
    with transaction.atomic():
        session = _inject_target(canonical, agent_id=agent_id, create=create_if_missing)
        assert_send_allowed(session)
        text = truncate_for_inject((f"[{label.strip()}]\n\n" if label and label.strip() else "") + message)
        entry = transcript_append(
            session=session, role=TranscriptEntry.Role.ASSISTANT, content=text, usage=dict(INJECTED_USAGE),
            stop_reason="injected", model="gateway-injected", provider="openclaw",
        )  # fmt: skip
        publish_session_event(session, "chat", {
            "runId": f"inject-{entry.message_id}", "sessionKey": session.key, "agentId": session.agent_id,
            "seq": 0, "state": "final", "message": message_row(entry),
        })  # fmt: skip
    return entry


def _inject_target(key: str, *, agent_id: str | None, create: bool) -> Session:
    session = Session.objects.filter(key=key).first()
    if session is None and not create:
        raise SessionNotFoundError(key, "session not found")
    if session is None:
        session, _ = _lock_or_create(key)
        publish_session_changed(session, reason="create")
    if agent_id and keys.normalize_agent_id(agent_id) != session.agent_id:
        raise AgentMismatchError(key, session.agent_id, keys.normalize_agent_id(agent_id))
    return session

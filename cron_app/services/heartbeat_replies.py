"""What a finished heartbeat run means: an ack, an alert, a duplicate or a failure (spec-a §4.4).

``HEARTBEAT_OK`` at the start or end of the reply (also wrapped in simple HTML/markdown,
with up to 4 trailing non-word characters) is stripped; nothing left, or at most
``ackMaxChars`` left, makes the reply an **ack**: nothing is delivered, the session's
``updatedAt`` goes back to its pre-run value (heartbeats do not keep a session alive)
and the transcript entry is marked suppressed. Otherwise the rest is an alert, dropped
as ``duplicate`` when identical to the last alert sent in 24 h, ``no-target`` when the
heartbeat target is ``none``, else ``sent``. Every outcome is a ``heartbeat`` event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from openclaw_site.config import HeartbeatConfig, get_config
from sessions_app.models import Run, Session, TranscriptEntry

from ..models import HeartbeatState
from .heartbeats import heartbeat_config_for, record_heartbeat_event

TOKEN = "HEARTBEAT_OK"
DUPLICATE_WINDOW = timedelta(hours=24)
PREVIEW_CHARS = 200
_MARKUP = re.compile(r"<[^>]*>")
_WRAP = r"[*_`~\s]*"
_LEADING = re.compile(rf"^{_WRAP}{TOKEN}{_WRAP}")
_TRAILING = re.compile(rf"{_WRAP}{TOKEN}{_WRAP}\W{{0,4}}$")


@dataclass(frozen=True)
class HeartbeatReply:
    ack: bool
    text: str


def strip_heartbeat_token(raw: str | None, *, max_ack_chars: int = 300) -> HeartbeatReply:
    """OpenClaw's ``stripHeartbeatToken`` in heartbeat mode; a token in the middle is text."""
    text = (raw or "").strip()
    if not text:
        return HeartbeatReply(ack=True, text="")
    if TOKEN not in text:
        return HeartbeatReply(ack=False, text=text)
    rest = _MARKUP.sub("", text).replace("&nbsp;", " ").strip()
    stripped = False
    while True:
        shorter = _LEADING.sub("", _TRAILING.sub("", rest, count=1), count=1).strip()
        if shorter == rest:
            break
        rest, stripped = shorter, True
    if not stripped:
        return HeartbeatReply(ack=False, text=text)
    return HeartbeatReply(ack=len(rest) <= max_ack_chars, text=rest)


def heartbeat_finish(*, run: Run) -> dict:
    """Apply the reply contract to a finished heartbeat run; returns the event payload."""
    cfg = get_config()
    hb = heartbeat_config_for(cfg, run.agent_id) or HeartbeatConfig()
    now = timezone.now()
    with transaction.atomic():
        state, _ = HeartbeatState.objects.select_for_update().get_or_create(agent_id=run.agent_id)
        fields = _failure(run) if run.status != Run.Status.OK else _reply_outcome(run, state, hb, now)
        fields |= {"durationMs": run.duration_ms or 0, "sessionKey": run.session_key, "runId": run.run_id}
        payload = record_heartbeat_event(state, fields)
        state.last_status = fields["status"]
        state.last_skip_reason = fields.get("reason", "")
        state.save()
    return payload


def _failure(run: Run) -> dict:
    error = run.error or {}
    reason = error.get("message") if isinstance(error, dict) else str(error)
    return {"status": "failed", "reason": reason or run.status, "indicatorType": "error"}


def _reply_outcome(run: Run, state: HeartbeatState, hb: HeartbeatConfig, now: datetime) -> dict:
    raw = (run.output or {}).get("text") or ""
    reply = strip_heartbeat_token(raw, max_ack_chars=int((run.input or {}).get("ackMaxChars", hb.ack_max_chars)))
    if reply.ack:
        status = "ok-empty" if not raw.strip() else "ok-token"
        _restore_updated_at(run)
        _mark_suppressed(run, status)
        return {"status": status, "silent": True, "indicatorType": "ok"}
    preview = reply.text[:PREVIEW_CHARS]
    recent = state.last_sent_at is not None and now - state.last_sent_at < DUPLICATE_WINDOW
    if recent and state.last_text == reply.text:
        _mark_suppressed(run, "duplicate")
        return {"status": "skipped", "reason": "duplicate", "preview": preview}
    if hb.target == "none":
        return {"status": "skipped", "reason": "no-target", "preview": preview}
    state.last_text, state.last_sent_at = reply.text, now
    return {"status": "sent", "to": _destination(run, hb), "preview": preview, "indicatorType": "alert"}


def _destination(run: Run, hb: HeartbeatConfig) -> str:
    if hb.to:
        return hb.to
    route = Session.objects.filter(key=run.session_key).values_list("delivery_context", flat=True).first() or {}
    return route.get("to") or run.session_key


def _restore_updated_at(run: Run) -> None:
    value = (run.input or {}).get("restoreUpdatedAt")
    if not value or run.session_id is None:
        return
    Session.objects.filter(pk=run.session_id).update(updated_at=datetime.fromisoformat(value))


def _mark_suppressed(run: Run, status: str) -> None:
    """Flag the run's prompt and reply entries so transcripts and WebChat can hide them
    (the drained ``System:`` lines stay visible)."""
    roles = (TranscriptEntry.Role.USER, TranscriptEntry.Role.ASSISTANT)
    entries = TranscriptEntry.objects.filter(run_id=run.run_id, role__in=roles)
    for entry in entries:
        entry.provenance = {**(entry.provenance or {}), "heartbeat": {"status": status, "suppressed": True}}
        entry.save(update_fields=["provenance"])

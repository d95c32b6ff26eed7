"""Session rows and transcripts."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from ..models import Session, TranscriptEntry


def _kind_for(key: str, *, main_key: str) -> str:
    from ..keys import classify_session_kind

    return classify_session_kind(key, main_key=main_key)


def session_ensure(*, key: str, agent_id: str | None = None, defaults: dict[str, Any] | None = None) -> tuple[Session, bool]:
    """Get the session with canonical ``key``, creating it lazily (OpenClaw §2.3).

    ``key`` must already be canonical (``keys.resolve_session_store_key``). Safe under
    concurrency: a racing creator loses the unique constraint and reads the winner.
    """
    from openclaw_site.config import get_config

    from ..keys import resolve_agent_id_from_session_key

    existing = Session.objects.filter(key=key).first()
    if existing is not None:
        return existing, False
    cfg = get_config()
    now = timezone.now()
    fields = {
        "agent_id": agent_id or resolve_agent_id_from_session_key(key),
        "kind": _kind_for(key, main_key=cfg.main_key),
        "updated_at": now,
        "session_started_at": now,
        **(defaults or {}),
    }
    try:
        with transaction.atomic():
            return Session.objects.create(key=key, **fields), True
    except IntegrityError:
        return Session.objects.get(key=key), False


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
    """Append one message to the session's current transcript (seq is per session).

    With an ``idempotency_key`` a replay returns the entry already written.
    """
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if idempotency_key:
        existing = TranscriptEntry.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
    with transaction.atomic():
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
    return entry

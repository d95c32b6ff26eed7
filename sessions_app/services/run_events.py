"""Payloads of the events a turn publishes (OpenClaw wire shapes) and their publishers.

Every event of a session goes through ``events.publish_session_event`` so it carries
the session's ``sessionSeq`` and is kept for resume. ``sessions.changed`` also goes to
the ``sessions.subscribe`` group. (``session.message`` is published by
``services.sessions.transcript_append``.)
"""

from __future__ import annotations

from typing import Any

from ..events import SESSIONS_GROUP, now_ms, publish_on_commit, publish_session_event
from ..models import Run, Session


def assistant_message(text: str, **extra: Any) -> dict[str, Any]:
    """``{role: "assistant", content: [{type: "text", text}], timestamp}``."""
    return {"role": "assistant", "content": [{"type": "text", "text": text}], "timestamp": now_ms(), **extra}


def publish_chat(*, session: Session, run_id: str, seq: int, state: str, **fields: Any) -> int:
    """A ``chat`` event: ``state`` delta|final|aborted|error; ``fields`` message, deltaText …"""
    payload = {"runId": run_id, "sessionKey": session.key, "seq": seq, "state": state}
    payload |= {k: v for k, v in fields.items() if v is not None}
    return publish_session_event(session, "chat", payload)


def publish_agent(*, session: Session, run_id: str, seq: int, stream: str, data: dict[str, Any]) -> int:
    """An ``agent`` event of stream lifecycle|assistant|tool|usage."""
    payload = {"runId": run_id, "seq": seq, "stream": stream, "ts": now_ms(), "data": data, "sessionKey": session.key}
    return publish_session_event(session, "agent", payload)


def publish_sessions_changed(*, session: Session, phase: str, run: Run | None = None) -> int:
    """``sessions.changed`` to the session's subscribers and to ``sessions.subscribe``."""
    from ..serializers import session_row

    session.refresh_from_db()
    payload: dict[str, Any] = {"sessionKey": session.key, "agentId": session.agent_id, "phase": phase, "ts": now_ms(),
                               "session": session_row(session)}  # fmt: skip
    if run is not None:
        payload["runId"] = run.run_id
    seq = publish_session_event(session, "sessions.changed", payload)
    publish_on_commit(SESSIONS_GROUP, "sessions.changed", {**payload, "sessionSeq": seq}, seq=seq)
    return seq

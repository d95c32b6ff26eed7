"""Slash commands in a user message, answered by the gateway before the model.

``/new`` and ``/reset`` (rotate the transcript, then run the remainder if any),
``/stop`` (also a bare ``stop``/``esc``/``abort``/``wait``/``exit``/``interrupt``: abort
the running turn and the queued followups, and stop the sub-agents the session spawned,
with their descendants), ``/queue <mode> [debounce:1s cap:N
drop:old|new|summarize]`` (``/queue default|reset`` clears), ``/status``, ``/subagents
list|kill|steer|info`` (``services.subagent_control``), ``/acp delegate list|status|close``
(``acp_app.commands``). The reply is
an assistant transcript entry plus a ``chat`` final; the command is recorded as a run
(``run_id`` = the idempotency key) so a replay answers the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from openclaw_site.errors import InvalidRequestError

from ..models import Run, Session

STOP_WORDS = {"stop", "esc", "abort", "wait", "exit", "interrupt"}
_OPTION = re.compile(r"^(debounce|cap|drop):(\S+)$", re.IGNORECASE)


@dataclass(frozen=True)
class Command:
    name: str
    args: str


def command_parse(message: str) -> Command | None:
    """The command of a message (``/name args``) or None for an ordinary message."""
    text = (message or "").strip()
    if text.lower() in STOP_WORDS or text.lower() in {f"/{w}" for w in STOP_WORDS}:
        return Command("stop", "")
    match = re.match(r"^/(new|reset|queue|status|subagents|acp)(?:\s+(.*))?$", text, re.IGNORECASE | re.DOTALL)
    if match is None:
        return None
    return Command(match.group(1).lower(), (match.group(2) or "").strip())


def command_handle(*, session: Session, command: Command, run_id: str, channel: str = "webchat"):
    """Run ``command`` on ``session``; returns a ``chat.SendResult``."""
    from .chat import SendResult, chat_send, reply_note

    if command.name == "stop":
        aborted, killed = _stop(session), _stop_subagents(session)
        run = _record(session, run_id, command, _stopped_text(aborted, killed))
        reply_note(session=session, run_id=run_id, text=run.output["text"])
        payload = {"ok": True, "aborted": bool(aborted or killed), "runIds": aborted, "subagentsKilled": killed}
        return SendResult(run=run, status="ok", session=session, payload=payload)
    if command.name in ("new", "reset"):
        session = _reset(session, reason=command.name)
        if command.args:
            return chat_send(session_key=session.key, message=command.args, idempotency_key=run_id, channel=channel)
        text = "New session started." if command.name == "new" else "Session reset."
    elif command.name == "queue":
        text = _queue_command(session, command.args)
    elif command.name == "subagents":
        from .subagent_control import subagents_command

        text = subagents_command(caller_session_key=session.key, args=command.args)
    elif command.name == "acp":
        from acp_app.commands import acp_command

        text = acp_command(caller_session_key=session.key, args=command.args)
    else:
        text = _status_text(session)
    run = _record(session, run_id, command, text)
    reply_note(session=session, run_id=run_id, text=text)
    return SendResult(run=run, status="ok", session=session)


def _record(session: Session, run_id: str, command: Command, text: str) -> Run:
    now = timezone.now()
    run, _ = Run.objects.get_or_create(run_id=run_id, defaults={
        "session": session, "session_key": session.key, "agent_id": session.agent_id, "status": Run.Status.OK,
        "input": {"message": f"/{command.name} {command.args}".strip(), "command": command.name},
        "output": {"text": text, "stopReason": "command"}, "started_at": now, "ended_at": now,
    })  # fmt: skip
    return run


def _stop(session: Session) -> list[str]:
    from .chat import session_abort

    return session_abort(session=session)


def _stop_subagents(session: Session) -> list[str]:
    from .subagent_control import subagents_stop_for_requester

    return subagents_stop_for_requester(session_key=session.key)


def _stopped_text(aborted: list[str], killed: list[str]) -> str:
    text = f"Stopped {len(aborted)} run(s)."
    return f"{text} Stopped {len(killed)} sub-agent(s)." if killed else text


def _reset(session: Session, *, reason: str) -> Session:
    """Abort the session's runs and rotate its transcript (``session_reset`` when present)."""
    from . import sessions as session_services

    reset = getattr(session_services, "session_reset", None)
    if reset is not None:
        result = reset(key=session.key, reason=reason)
        return result if isinstance(result, Session) else Session.objects.get(pk=session.pk)
    _stop(session)
    import uuid

    with transaction.atomic():
        session.entries.filter(archived=False).update(archived=True)
        Session.objects.filter(pk=session.pk).update(
            session_id=str(uuid.uuid4()), system_sent=False, aborted_last_run=False, input_tokens=0,
            output_tokens=0, total_tokens=0, updated_at=timezone.now(), session_started_at=timezone.now(),
        )  # fmt: skip
    return Session.objects.get(pk=session.pk)


def _queue_command(session: Session, args: str) -> str:
    from openclaw_site.config import QUEUE_DROPS, QUEUE_MODE_ALIASES, QUEUE_MODES, parse_duration_ms

    from .chat import queue_settings

    words = args.split()
    fields: dict = {}
    if words and words[0].lower() in ("default", "reset"):
        fields = {"queue_mode": None, "queue_debounce_ms": None, "queue_cap": None, "queue_drop": None}
        words = []
    elif words and not _OPTION.match(words[0]):
        mode = QUEUE_MODE_ALIASES.get(words[0].lower(), words[0].lower())
        if mode not in QUEUE_MODES:
            raise InvalidRequestError(f"unknown queue mode: {words[0]} (use {', '.join(QUEUE_MODES)})")
        fields["queue_mode"], words = mode, words[1:]
    for word in words:
        fields.update(_queue_option(word, QUEUE_DROPS, parse_duration_ms))
    if fields:
        Session.objects.filter(pk=session.pk).update(**fields)
        session.refresh_from_db()
    q = queue_settings(session=session)
    return f"Queue: mode={q.mode} debounce={q.debounce_ms}ms cap={q.cap} drop={q.drop}"


def _queue_option(word: str, drops, parse_duration_ms) -> dict:
    match = _OPTION.match(word)
    if match is None:
        raise InvalidRequestError(f"invalid /queue option: {word} (debounce:<duration> cap:<n> drop:old|new|summarize)")
    name, value = match.group(1).lower(), match.group(2)
    if name == "debounce":
        return {"queue_debounce_ms": parse_duration_ms(value, key="debounce", unit="ms")}
    if name == "cap":
        if not value.isdigit():
            raise InvalidRequestError(f"invalid /queue cap: {value}")
        return {"queue_cap": int(value) or None}
    if value.lower() not in drops:
        raise InvalidRequestError(f"invalid /queue drop: {value} (use {', '.join(drops)})")
    return {"queue_drop": value.lower()}


def _status_text(session: Session) -> str:
    from ..providers import resolve_session_model
    from .chat import queue_settings

    provider, model = resolve_session_model(agent_id=session.agent_id, provider_override=session.provider_override,
                                            model_override=session.model_override)  # fmt: skip
    q = queue_settings(session=session)
    return "\n".join([
        f"Session: {session.key} (agent {session.agent_id}, {session.state})",
        f"Model: {provider}/{model}",
        f"Tokens: in {session.input_tokens} / out {session.output_tokens} / total {session.total_tokens}",
        f"Queue: mode={q.mode} debounce={q.debounce_ms}ms cap={q.cap} drop={q.drop}",
    ])  # fmt: skip

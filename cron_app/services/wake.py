"""``wake`` and ``system-event``: queue a ``System:`` line and wake its session (spec-a §4.5, §4.6).

The system event and the heartbeat wake resolve their target with the same function,
``keys.resolve_cron_target`` (the symmetry OpenClaw PR #78687 established): the explicit
agentId, else the agent of an agent-prefixed key, else the default agent; an agent that
is not configured becomes the default agent, and a key that then belongs to another
agent falls back to the resolved agent's main session.

Where the reference gateway and the issue disagree the issue wins: a key of an
unconfigured agent (``agent:ghost:main``) lands on the default agent's main session,
where OpenClaw 2026.9 answers ``UNAVAILABLE "Error: cron job agent is unavailable: ghost"``.
"""

from __future__ import annotations

from openclaw_site.config import GatewayConfig, get_config
from sessions_app import keys
from sessions_app.services.sessions import session_ensure
from sessions_app.services.system_events import system_event_enqueue

from ..exceptions import WakeTargetError
from .heartbeats import heartbeat_request

WAKE_MODES = ("now", "next-heartbeat")


def _clean(value: str | None) -> str | None:
    return (value or "").strip() or None


def wake_target_check(*, session_key: str | None, agent_id: str | None) -> None:
    """Refuse a subagent key and an agentId that contradicts the key's agent."""
    if session_key and keys.is_subagent_session_key(session_key):
        raise WakeTargetError("wake sessionKey cannot target a subagent session", code="SUBAGENT_TARGET")
    parsed = keys.parse_agent_session_key(session_key)
    if agent_id and parsed and keys.normalize_agent_id(agent_id) != keys.normalize_agent_id(parsed.agent_id):
        owner, wanted = keys.normalize_agent_id(parsed.agent_id), keys.normalize_agent_id(agent_id)
        raise WakeTargetError(
            "Multiple agents are configured, but session agent resolution has no explicit owner. "
            f'The agent-scoped session key belongs to "{owner}", not "{wanted}".',
            code="SESSION_AGENT_MISMATCH",
        )


def system_event_target(*, cfg: GatewayConfig, session_key: str | None, agent_id: str | None) -> keys.CronTarget:
    """Where a system event lands: ``resolve_cron_target``, untargeted → the main session."""
    target = keys.resolve_cron_target(cfg=cfg, agent_id=agent_id, session_key=session_key)
    if target.session_key is None:
        return keys.CronTarget(agent_id=target.agent_id, session_key=keys.resolve_main_session_key(cfg))
    return target


def system_event_add(
    *, text: str, session_key: str | None = None, agent_id: str | None = None, context_key: str | None = None,
    origin: str = "",
) -> keys.CronTarget:  # fmt: skip
    """Queue ``text`` on the resolved session (created if missing); returns the target."""
    cfg = get_config()
    target = system_event_target(cfg=cfg, session_key=_clean(session_key), agent_id=_clean(agent_id))
    session_ensure(key=target.session_key, agent_id=target.agent_id)
    system_event_enqueue(
        session_key=target.session_key, agent_id=target.agent_id, text=text, context_key=context_key, origin=origin
    )
    return target


def wake(*, mode: str, text: str, session_key: str | None = None, agent_id: str | None = None) -> dict:
    """OpenClaw's ``cron.wake``: enqueue the event, then wake per mode.

    ``now`` (or any sessionKey, the PR #78687 exception) → an immediate targeted
    heartbeat; ``next-heartbeat`` without a key → the event waits for the next scheduled
    heartbeat. Empty text → ``{"ok": False}``; whitespace-only keys count as omitted.
    """
    text, key, agent = (text or "").strip(), _clean(session_key), _clean(agent_id)
    if not text:
        return {"ok": False}
    wake_target_check(session_key=key, agent_id=agent)
    target = system_event_add(text=text, session_key=key, agent_id=agent, origin="wake")
    if mode == "now" or key:
        heartbeat_request(
            source="manual", intent="immediate", reason="wake",
            agent_id=target.agent_id if (key or agent) else None, session_key=target.session_key if key else None,
        )  # fmt: skip
    return {"ok": True}


def system_event_post(
    *, text: str, session_key: str | None = None, agent_id: str | None = None, wake_now: bool = False,
    host: str | None = None, instance_id: str | None = None,
) -> dict:  # fmt: skip
    """The ``system-event`` RPC: ``Node:`` presence lines go to the main session tagged
    ``presence:<host>``; other text to the resolved target, woken when ``wake_now``."""
    text = (text or "").strip()
    if text.startswith("Node:"):
        system_event_add(text=text, context_key=f"presence:{host or instance_id or 'node'}", origin="presence")
        return {"ok": True}
    key, agent = _clean(session_key), _clean(agent_id)
    wake_target_check(session_key=key, agent_id=agent)
    target = system_event_add(text=text, session_key=key, agent_id=agent, origin="system-event")
    if wake_now:
        heartbeat_request(
            source="manual", intent="immediate", reason="wake", agent_id=target.agent_id,
            session_key=target.session_key if key else None,
        )  # fmt: skip
    return {"ok": True, "sessionKey": target.session_key}

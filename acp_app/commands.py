"""``/acp delegate list | status <label> | close <label>`` in the owner's chat (spec-b §6.5).

Everything is scoped to the workers owned by the session the command is typed in. The
text is what OpenClaw answers; errors come back as ``⚠️`` lines, never exceptions.
"""

from __future__ import annotations

from openclaw_site.errors import GatewayError

from .selectors import delegate_expiry, delegate_get, delegate_list_for_owner, iso
from .services import MANUAL_CLOSE, delegate_close_for_owner

USAGE = "Usage: /acp delegate list | /acp delegate close <label> | /acp delegate status <label>"
FOLLOW_UP_HINT = "Follow up via sessions_send(label=...). Close with /acp delegate close <label>."


def acp_command(*, caller_session_key: str, args: str) -> str:
    """The reply to ``/acp <args>``."""
    words = (args or "").split(maxsplit=2)
    if len(words) < 2 or words[0].lower() != "delegate":
        return USAGE
    action, rest = words[1].lower(), (words[2].strip() if len(words) > 2 else "")
    try:
        if action == "list":
            return delegate_list_text(owner_session_key=caller_session_key)
        if action in ("status", "close") and rest:
            handler = delegate_status_text if action == "status" else delegate_close_text
            return handler(owner_session_key=caller_session_key, label=rest)
    except GatewayError as error:
        return f"⚠️ {error.message}"
    return USAGE


def delegate_list_text(*, owner_session_key: str) -> str:
    lines = ["ACP hub-delegated sessions:", "-----"]
    for acp in delegate_list_for_owner(owner_session_key=owner_session_key):
        expiry = delegate_expiry(acp)
        name = acp.session.label or acp.harness_agent
        lines.append(f"- {name} ({acp.harness_agent}, {acp.state}) -> {acp.session.key}, "
                     f"idle-expires:{iso(expiry.idle_expires_at)}, max-age-expires:{iso(expiry.max_age_expires_at)}")  # fmt: skip
    if len(lines) == 2:
        lines.append("(none)")
    return "\n".join(lines)


def delegate_status_text(*, owner_session_key: str, label: str) -> str:
    acp = delegate_get(owner_session_key=owner_session_key, label=label)
    expiry = delegate_expiry(acp)
    return "\n".join([
        f'ACP hub-delegated session "{acp.session.label}":',
        f"Key: {acp.session.key}",
        f"Agent: {acp.harness_agent}",
        f"State: {acp.state}",
        f"Owner: {acp.owner_session_key}",
        f"Last activity: {iso(expiry.last_activity_at)}",
        f"Idle expires: {iso(expiry.idle_expires_at)}",
        f"Max age expires: {iso(expiry.max_age_expires_at)}",
        FOLLOW_UP_HINT,
    ])  # fmt: skip


def delegate_close_text(*, owner_session_key: str, label: str) -> str:
    result = delegate_close_for_owner(owner_session_key=owner_session_key, label=label, reason=MANUAL_CLOSE)
    notice = f" ({result['runtimeNotice']})" if result.get("runtimeNotice") else ""
    return (f'✅ Closed hub-delegated session "{result["label"]}" ({result["sessionKey"]}){notice}. '
            f"Removed {result['removedBindings']} binding(s).")  # fmt: skip

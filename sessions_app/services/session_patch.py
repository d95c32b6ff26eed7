"""The field rules of ``sessions.patch`` (spec-a §2.5): absent = keep, null = clear.

:func:`apply_patch` changes a locked :class:`Session` in memory (the caller saves it);
every refusal is an :class:`InvalidSessionPatchError` with OpenClaw's message.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, TypedDict

from .. import keys, levels
from ..exceptions import InvalidLabelError, InvalidSessionPatchError
from ..models import Session
from ..serializers import agent_default_model

LABEL_MAX = 64


class SessionPatch(TypedDict, total=False):
    """The ``sessions.patch`` params (wire names) other than ``key``."""

    label: str | None
    thinkingLevel: str | None
    fastMode: bool | None
    verboseLevel: str | None
    traceLevel: str | None
    reasoningLevel: str | None
    responseUsage: str | None
    elevatedLevel: str | None
    execHost: str | None
    execSecurity: str | None
    execAsk: str | None
    execNode: str | None
    model: str | None
    spawnedBy: str | None
    spawnedWorkspaceDir: str | None
    spawnDepth: int | None
    subagentRole: str | None
    subagentControlScope: str | None
    envelope: dict | None
    sendPolicy: str | None
    groupActivation: str | None
    queueMode: str | None
    queueDebounceMs: int | None
    queueCap: int | None
    queueDrop: str | None


def parse_label(raw: Any) -> str | None:
    """A trimmed label; empty → None (cleared); longer than 64 → ``invalid label: too long``."""
    if not isinstance(raw, str):
        raise InvalidLabelError("invalid label: must be a string")
    trimmed = raw.strip()
    if len(trimmed) > LABEL_MAX:
        raise InvalidLabelError(f"invalid label: too long (max {LABEL_MAX})")
    return trimmed or None


def apply_patch(session: Session, changes: Mapping[str, Any]) -> None:
    """Apply every present field of ``changes`` to ``session`` (not saved)."""
    for name, rule in _RULES:
        if name in changes:
            rule(session, changes[name])
    _check_xhigh(session, explicit="thinkingLevel" in changes)


# --- lineage ----------------------------------------------------------------------------


def _spawned_by(session: Session, raw: str | None) -> None:
    if raw is None:
        if session.spawned_by:
            raise InvalidSessionPatchError("spawnedBy cannot be cleared once set", field="spawnedBy")
        return
    value = raw.strip()
    if not value:
        raise InvalidSessionPatchError("invalid spawnedBy: empty", field="spawnedBy")
    if not keys.is_subagent_session_key(session.key):
        raise InvalidSessionPatchError("spawnedBy is only supported for subagent:* sessions", field="spawnedBy")
    if session.spawned_by and session.spawned_by != value:
        raise InvalidSessionPatchError("spawnedBy cannot be changed once set", field="spawnedBy")
    session.spawned_by = value


def _spawn_depth(session: Session, raw: int | None) -> None:
    if raw is None:
        if session.spawn_depth is not None:
            raise InvalidSessionPatchError("spawnDepth cannot be cleared once set", field="spawnDepth")
        return
    if not keys.is_subagent_session_key(session.key):
        raise InvalidSessionPatchError("spawnDepth is only supported for subagent:* sessions", field="spawnDepth")
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise InvalidSessionPatchError("invalid spawnDepth (use an integer >= 0)", field="spawnDepth")
    if session.spawn_depth is not None and session.spawn_depth != raw:
        raise InvalidSessionPatchError("spawnDepth cannot be changed once set", field="spawnDepth")
    session.spawn_depth = raw


def _label(session: Session, raw: str | None) -> None:
    # Uniqueness is the database constraint's job (the caller maps IntegrityError).
    session.label = None if raw is None else parse_label(raw)


def _plain(attr: str, choices: tuple[str, ...] | None = None) -> Callable[[Session, Any], None]:
    def rule(session: Session, raw: Any) -> None:
        if raw is not None and choices is not None and raw not in choices:
            hint = "|".join(f'"{choice}"' for choice in choices)
            raise InvalidSessionPatchError(f"invalid {attr} (use {hint})", field=attr)
        if isinstance(raw, str):
            raw = raw.strip() or None
        setattr(session, _ATTRS.get(attr, attr), raw)

    return rule


# --- levels kept in Session.settings ------------------------------------------------------


def _set(session: Session, name: str, value: Any) -> None:
    stored = dict(session.settings or {})
    if value is None:
        stored.pop(name, None)
    else:
        stored[name] = value
    session.settings = stored


def _level(name: str, normalize, hint: str, *, off_clears: bool = False) -> Callable[[Session, Any], None]:
    def rule(session: Session, raw: Any) -> None:
        if raw is None:
            return _set(session, name, None)
        value = normalize(raw) if isinstance(raw, str) else None
        if value is None:
            raise InvalidSessionPatchError(f"invalid {name} (use {hint})", field=name)
        _set(session, name, None if off_clears and value == "off" else value)

    return rule


def _thinking(session: Session, raw: str | None) -> None:
    if raw is None:
        return _set(session, "thinkingLevel", None)
    value = levels.normalize_think_level(raw)
    if value is None:
        provider, model = _configured_model(session)
        hint = levels.thinking_levels_hint(provider, model)
        raise InvalidSessionPatchError(f"invalid thinkingLevel (use {hint})", field="thinkingLevel")
    _set(session, "thinkingLevel", value)


def _check_xhigh(session: Session, *, explicit: bool) -> None:
    if (session.settings or {}).get("thinkingLevel") != "xhigh":
        return
    if levels.supports_xhigh(*_configured_model(session)):
        return
    if explicit:
        message = f'thinkingLevel "xhigh" is only supported for {levels.XHIGH_HINT}'
        raise InvalidSessionPatchError(message, field="thinkingLevel")
    _set(session, "thinkingLevel", "high")


def _fast_mode(session: Session, raw: bool | None) -> None:
    _set(session, "fastMode", raw)


def _exec_node(session: Session, raw: str | None) -> None:
    if raw is not None and not raw.strip():
        raise InvalidSessionPatchError("invalid execNode: empty", field="execNode")
    _set(session, "execNode", raw.strip() if raw else None)


def _setting(name: str) -> Callable[[Session, Any], None]:
    return lambda session, raw: _set(session, name, raw)


# --- model ----------------------------------------------------------------------------------


def _configured_model(session: Session) -> tuple[str, str]:
    if session.model_override:
        return session.provider_override or "", session.model_override
    return agent_default_model(session.agent_id)


def _model(session: Session, raw: str | None) -> None:
    """A user model override; ``null`` or the agent default itself clears it."""
    from openclaw_site.config import UnknownModelError, get_config

    session.model = session.model_provider = None  # the runtime model is re-resolved next turn
    if raw is None:
        return _clear_model(session)
    if not raw.strip():
        raise InvalidSessionPatchError("invalid model: empty", field="model")
    try:
        provider, model = get_config().resolve_model(raw.strip())
    except UnknownModelError as error:
        raise InvalidSessionPatchError(error.message.split(": ", 1)[-1], field="model") from error
    if (provider, model) == agent_default_model(session.agent_id):
        return _clear_model(session)
    session.provider_override, session.model_override, session.model_override_source = provider, model, "user"


def _clear_model(session: Session) -> None:
    session.provider_override = session.model_override = session.model_override_source = None


# --- queue overrides (spec-a §7.2) -----------------------------------------------------------


def _queue_mode(session: Session, raw: str | None) -> None:
    from openclaw_site.config import QUEUE_MODE_ALIASES, QUEUE_MODES

    if raw is None:
        session.queue_mode = None
        return
    key = raw.strip().lower()
    mode = QUEUE_MODE_ALIASES.get(key, key)
    if mode not in QUEUE_MODES:
        raise InvalidSessionPatchError(f"invalid queueMode (use {'|'.join(QUEUE_MODES)})", field="queueMode")
    session.queue_mode = mode


def _queue_drop(session: Session, raw: str | None) -> None:
    from openclaw_site.config import QUEUE_DROPS

    value = levels.normalize_choice(raw, QUEUE_DROPS) if raw is not None else None
    if raw is not None and value is None:
        raise InvalidSessionPatchError(f"invalid queueDrop (use {'|'.join(QUEUE_DROPS)})", field="queueDrop")
    session.queue_drop = value


_ATTRS = {
    "spawnedWorkspaceDir": "spawned_workspace_dir", "subagentRole": "subagent_role",
    "subagentControlScope": "subagent_control_scope", "sendPolicy": "send_policy",
    "queueDebounceMs": "queue_debounce_ms", "queueCap": "queue_cap",
}  # fmt: skip

_RULES: tuple[tuple[str, Callable[[Session, Any], None]], ...] = (
    ("spawnedBy", _spawned_by),
    ("spawnDepth", _spawn_depth),
    ("label", _label),
    ("thinkingLevel", _thinking),
    ("verboseLevel", _level("verboseLevel", levels.normalize_verbose_level, '"on"|"off"')),
    ("traceLevel", _level("traceLevel", levels.normalize_verbose_level, '"on"|"off"')),
    ("reasoningLevel", _level("reasoningLevel", levels.normalize_reasoning_level, '"on"|"off"|"stream"', off_clears=True)),
    ("responseUsage", _level("responseUsage", levels.normalize_usage_display, '"off"|"tokens"|"full"', off_clears=True)),
    ("elevatedLevel", _level("elevatedLevel", levels.normalize_elevated_level, '"on"|"off"|"ask"|"full"')),
    ("execHost", _level("execHost", lambda v: levels.normalize_choice(v, levels.EXEC_HOSTS),
                        "|".join(f'"{h}"' for h in levels.EXEC_HOSTS))),
    ("execSecurity", _level("execSecurity", lambda v: levels.normalize_choice(v, levels.EXEC_SECURITY),
                            '"deny"|"allowlist"|"full"')),
    ("execAsk", _level("execAsk", lambda v: levels.normalize_choice(v, levels.EXEC_ASK), '"off"|"on-miss"|"always"')),
    ("execNode", _exec_node),
    ("fastMode", _fast_mode),
    ("model", _model),
    ("sendPolicy", _plain("sendPolicy", levels.SEND_POLICIES)),
    ("groupActivation", _level("groupActivation", lambda v: levels.normalize_choice(v, levels.GROUP_ACTIVATIONS),
                               '"mention"|"always"')),
    ("subagentRole", _plain("subagentRole", levels.SUBAGENT_ROLES)),
    ("subagentControlScope", _plain("subagentControlScope", levels.SUBAGENT_CONTROL_SCOPES)),
    ("spawnedWorkspaceDir", _plain("spawnedWorkspaceDir")),
    ("envelope", _setting("envelope")),
    ("queueMode", _queue_mode),
    ("queueDebounceMs", _plain("queueDebounceMs")),
    ("queueCap", _plain("queueCap")),
    ("queueDrop", _queue_drop),
)  # fmt: skip

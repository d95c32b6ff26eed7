"""Session keys: parsing, canonicalisation and classification (spec-a §1, §3.3).

Pure functions with no Django or database access, so every layer (RPC, REST, tools,
tasks, the engine) can resolve a key the same way. A key is either special (``global``,
``unknown``), agent-prefixed (``agent:<agentId>:<rest>``) or relative (anything else,
resolved against the default agent). Canonical keys are lowercase; "lower" here is
ASCII lowercase and "trim" strips surrounding whitespace, as the spec defines them.

Functions that need configuration take a duck-typed ``cfg`` (see :class:`KeyConfig`);
this module never loads it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

DEFAULT_AGENT_ID = "main"
DEFAULT_MAIN_KEY = "main"
DEFAULT_ACCOUNT_ID = "default"

AGENT_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}", re.IGNORECASE | re.ASCII)
_INVALID_ID_CHARS_RE = re.compile(r"[^a-z0-9_-]+")
_CRON_RUN_REST_RE = re.compile(r"cron:[^:]+:run:[^:]+")
_THREAD_MARKER = ":thread:"
_SPECIAL_KEYS = ("global", "unknown")
_DIRECT_SEGMENTS = frozenset({"direct", "dm"})
_GROUP_KINDS = frozenset({"group", "channel"})
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

KeyShape = Literal["missing", "agent", "malformed_agent", "legacy_or_alias"]
SessionKind = Literal[
    "global", "unknown", "main", "cron", "subagent", "acp", "dashboard", "hook",
    "group", "direct", "other",
]


class KeyConfig(Protocol):
    """The slice of the gateway config that key resolution reads."""

    main_key: str  # session.mainKey
    scope: str  # session.scope: "per-sender" or "global"

    def default_agent_id(self) -> str: ...

    def agent_ids(self) -> list[str]: ...


@dataclass(frozen=True)
class ParsedKey:
    agent_id: str
    rest: str


@dataclass(frozen=True)
class CronTarget:
    """Where a cron/wake call lands; ``session_key`` is None for an untargeted wake."""

    agent_id: str
    session_key: str | None


@dataclass(frozen=True)
class ThreadSessionKeys:
    session_key: str
    parent_session_key: str | None


@dataclass(frozen=True)
class GroupKey:
    channel: str
    kind: str
    id: str


def _lower(value: str) -> str:
    return value.translate(_ASCII_LOWER)


def _clean(value: str | None) -> str:
    return (value or "").strip()


# --- ids ------------------------------------------------------------------------------


def _normalize_id(value: str | None, fallback: str) -> str:
    trimmed = _clean(value)
    if not trimmed:
        return fallback
    if AGENT_ID_RE.fullmatch(trimmed):
        return _lower(trimmed)
    # Upstream strips only dashes, so an id like "_x" survives sanitising as is.
    sanitized = _INVALID_ID_CHARS_RE.sub("-", _lower(trimmed)).strip("-")[:64]
    return sanitized or fallback


def normalize_agent_id(value: str | None) -> str:
    """Lowercase a valid id; otherwise collapse invalid runs to ``-``; empty → ``main``."""
    return _normalize_id(value, DEFAULT_AGENT_ID)


def is_valid_agent_id(value: str | None) -> bool:
    """True when the trimmed value matches AGENT_ID_RE (case-insensitively)."""
    return bool(AGENT_ID_RE.fullmatch(_clean(value)))


def normalize_account_id(value: str | None) -> str:
    """Same algorithm as :func:`normalize_agent_id`, falling back to ``default``."""
    return _normalize_id(value, DEFAULT_ACCOUNT_ID)


def normalize_main_key(value: str | None) -> str:
    """Trim and lowercase (no sanitising); empty → ``main``."""
    return _lower(_clean(value)) or DEFAULT_MAIN_KEY


def normalize_session_key(key: str | None) -> str:
    """Trim and lowercase a key (``GLOBAL`` → ``global``); None → ``""``."""
    return _lower(_clean(key))


# --- parsing --------------------------------------------------------------------------


def parse_agent_session_key(key: str | None) -> ParsedKey | None:
    """Split ``agent:<id>:<rest>``, dropping empty segments; None unless ≥ 3 segments.

    The agent id is trimmed but not normalised; the rest keeps its (lowercased) segments.
    """
    parts = [part for part in normalize_session_key(key).split(":") if part]
    if len(parts) < 3 or parts[0] != "agent":
        return None
    agent_id, rest = parts[1].strip(), ":".join(parts[2:])
    if not agent_id or not rest:
        return None
    return ParsedKey(agent_id=agent_id, rest=rest)


def classify_session_key_shape(key: str | None) -> KeyShape:
    """``missing`` (empty), ``agent`` (parses), ``malformed_agent`` or ``legacy_or_alias``."""
    raw = normalize_session_key(key)
    if not raw:
        return "missing"
    if parse_agent_session_key(raw):
        return "agent"
    return "malformed_agent" if raw.startswith("agent:") else "legacy_or_alias"


def resolve_agent_id_from_session_key(key: str | None) -> str:
    """Agent of an agent-prefixed key, else the hard-coded ``main``."""
    parsed = parse_agent_session_key(key)
    return normalize_agent_id(parsed.agent_id if parsed else DEFAULT_AGENT_ID)


def resolve_wake_agent_id(key: str | None, *, cfg: KeyConfig) -> str:
    """Agent of an agent-prefixed key, else the configured default agent."""
    parsed = parse_agent_session_key(key)
    return normalize_agent_id(parsed.agent_id if parsed else cfg.default_agent_id())


# --- main keys and canonical store keys -----------------------------------------------


def build_agent_main_session_key(agent_id: str | None, main_key: str | None = None) -> str:
    """``agent:<normalised agent>:<normalised main key>``."""
    return f"agent:{normalize_agent_id(agent_id)}:{normalize_main_key(main_key)}"


def resolve_main_session_key(cfg: KeyConfig) -> str:
    """``global`` under scope global, else the default agent's main key."""
    if cfg.scope == "global":
        return "global"
    return build_agent_main_session_key(cfg.default_agent_id(), cfg.main_key)


def resolve_agent_main_session_key(*, cfg: KeyConfig, agent_id: str | None) -> str:
    """The agent's main key; ignores scope."""
    return build_agent_main_session_key(agent_id, cfg.main_key)


def to_agent_request_session_key(store_key: str | None) -> str | None:
    """The agent-relative part of a store key (``rest``), the raw key if relative."""
    raw = _clean(store_key)
    if not raw:
        return None
    parsed = parse_agent_session_key(raw)
    return parsed.rest if parsed else raw


def to_agent_store_session_key(
    *, agent_id: str | None, request_key: str | None, main_key: str | None = None
) -> str:
    """Prefix a request key with its agent; empty or ``main`` → the agent's main key.

    A malformed ``agent:`` key is only lowercased, never re-prefixed.
    """
    raw = _clean(request_key)
    lowered = _lower(raw)
    if not raw or lowered == DEFAULT_MAIN_KEY:
        return build_agent_main_session_key(agent_id, main_key)
    parsed = parse_agent_session_key(raw)
    if parsed:
        return f"agent:{parsed.agent_id}:{parsed.rest}"
    if lowered.startswith("agent:"):
        return lowered
    return f"agent:{normalize_agent_id(agent_id)}:{lowered}"


def canonicalize_main_session_alias(
    *, cfg: KeyConfig, agent_id: str | None, session_key: str | None
) -> str:
    """Map a main alias of the agent to its main key (``global`` under scope global).

    Aliases: ``main``, the configured mainKey, ``agent:<a>:<mainKey>``, ``agent:<a>:main``.
    Any other key is returned trimmed and otherwise unchanged.
    """
    raw = _clean(session_key)
    main_key = normalize_main_key(cfg.main_key)
    agent_main = build_agent_main_session_key(agent_id, main_key)
    aliases = {DEFAULT_MAIN_KEY, main_key, agent_main, build_agent_main_session_key(agent_id)}
    if not raw or raw not in aliases:
        return raw
    return "global" if cfg.scope == "global" else agent_main


def resolve_session_store_key(*, cfg: KeyConfig, session_key: str | None) -> str:
    """The canonical key every RPC uses for a client-supplied key.

    Specials are lowercased; agent keys are lowercased and main aliases canonicalised;
    bare ``main``/mainKey → :func:`resolve_main_session_key`; other relative keys are
    prefixed with the default agent.
    """
    lowered = normalize_session_key(session_key)
    if not lowered or lowered in _SPECIAL_KEYS:
        return lowered
    parsed = parse_agent_session_key(lowered)
    if parsed:
        return canonicalize_main_session_alias(
            cfg=cfg, agent_id=normalize_agent_id(parsed.agent_id), session_key=lowered
        )
    if lowered in (DEFAULT_MAIN_KEY, normalize_main_key(cfg.main_key)):
        return resolve_main_session_key(cfg)
    return to_agent_store_session_key(
        agent_id=cfg.default_agent_id(), request_key=lowered, main_key=cfg.main_key
    )


# --- cron and wake targets (§3.3) -----------------------------------------------------


def resolve_cron_agent(*, cfg: KeyConfig, requested: str | None) -> str:
    """The requested agent when it is configured, else the default agent."""
    default = normalize_agent_id(cfg.default_agent_id())
    if not _clean(requested):
        return default
    wanted = normalize_agent_id(requested)
    configured = {normalize_agent_id(agent_id) for agent_id in cfg.agent_ids()}
    return wanted if wanted in configured else default


def resolve_cron_session_key(
    *, cfg: KeyConfig, agent_id: str, requested_session_key: str | None
) -> str:
    """The agent's store key for a requested key; a foreign agent's key → own main key."""
    requested = _clean(requested_session_key)
    if not requested:
        return resolve_agent_main_session_key(cfg=cfg, agent_id=agent_id)
    candidate = to_agent_store_session_key(
        agent_id=agent_id, request_key=requested, main_key=cfg.main_key
    )
    canonical = canonicalize_main_session_alias(cfg=cfg, agent_id=agent_id, session_key=candidate)
    foreign = resolve_agent_id_from_session_key(canonical) != normalize_agent_id(agent_id)
    if canonical != "global" and foreign:
        return resolve_agent_main_session_key(cfg=cfg, agent_id=agent_id)
    return canonical


def resolve_cron_target(
    *, cfg: KeyConfig, agent_id: str | None = None, session_key: str | None = None
) -> CronTarget:
    """Resolve agent and key the same way for system-event enqueue and wake.

    Agent: the explicit id, else the agent of an agent-prefixed key (relative keys use
    the default agent), then :func:`resolve_cron_agent`. Neither given → untargeted
    (``session_key`` None; an enqueue then uses :func:`resolve_main_session_key`).
    Under scope global the agent's main key becomes ``global``.
    """
    requested_agent, requested_key = _clean(agent_id), _clean(session_key)
    if not requested_agent and not requested_key:
        return CronTarget(agent_id=resolve_cron_agent(cfg=cfg, requested=None), session_key=None)
    parsed = parse_agent_session_key(requested_key)
    if not requested_agent and parsed:
        requested_agent = parsed.agent_id
    resolved_agent = resolve_cron_agent(cfg=cfg, requested=requested_agent)
    key = resolve_cron_session_key(
        cfg=cfg, agent_id=resolved_agent, requested_session_key=requested_key
    )
    key = canonicalize_main_session_alias(cfg=cfg, agent_id=resolved_agent, session_key=key)
    return CronTarget(agent_id=resolved_agent, session_key=key)


# --- predicates -----------------------------------------------------------------------


def _rest_starts_with(key: str | None, prefix: str) -> bool:
    parsed = parse_agent_session_key(key)
    return bool(parsed and parsed.rest.startswith(prefix))


def _key_or_rest_starts_with(key: str | None, prefix: str) -> bool:
    return normalize_session_key(key).startswith(prefix) or _rest_starts_with(key, prefix)


def is_cron_session_key(key: str | None) -> bool:
    """Agent key whose rest starts with ``cron:``."""
    return _rest_starts_with(key, "cron:")


def is_cron_run_session_key(key: str | None) -> bool:
    """Agent key whose rest is exactly ``cron:<job>:run:<run>`` (hidden from lists)."""
    parsed = parse_agent_session_key(key)
    return bool(parsed and _CRON_RUN_REST_RE.fullmatch(parsed.rest))


def is_subagent_session_key(key: str | None) -> bool:
    """``subagent:…`` relative key or agent key whose rest starts with ``subagent:``."""
    return _key_or_rest_starts_with(key, "subagent:")


def get_subagent_depth(key: str | None) -> int:
    """Number of ``:subagent:`` occurrences in the lowercased key."""
    return normalize_session_key(key).count(":subagent:")


def is_acp_session_key(key: str | None) -> bool:
    """``acp:…`` relative key or agent key whose rest starts with ``acp:``."""
    return _key_or_rest_starts_with(key, "acp:")


def is_dashboard_session_key(key: str | None) -> bool:
    """``dashboard:…`` relative key or agent key whose rest starts with ``dashboard:``."""
    return _key_or_rest_starts_with(key, "dashboard:")


def is_hook_session_key(key: str | None) -> bool:
    """``hook:…`` relative key or agent key whose rest starts with ``hook:``."""
    return _key_or_rest_starts_with(key, "hook:")


# --- threads --------------------------------------------------------------------------


def resolve_thread_session_keys(
    base: str, thread_id: str | None, *, use_suffix: bool = True
) -> ThreadSessionKeys:
    """``<base>:thread:<lower(id)>`` with ``base`` as parent; no thread id → ``base``."""
    thread = _clean(thread_id)
    if not thread or not use_suffix:
        return ThreadSessionKeys(session_key=base, parent_session_key=None)
    return ThreadSessionKeys(
        session_key=f"{base}{_THREAD_MARKER}{_lower(thread)}", parent_session_key=base
    )


def parse_thread_session_suffix(key: str | None) -> tuple[str, str | None]:
    """Split at the last ``:thread:`` into (base, thread id); no thread → (key, None)."""
    raw = _clean(key)
    index = _lower(raw).rfind(_THREAD_MARKER)
    thread = raw[index + len(_THREAD_MARKER):].strip() if index > 0 else ""
    if not thread:
        return raw, None
    return raw[:index], thread


def resolve_thread_parent_session_key(key: str | None) -> str | None:
    """The key before the last ``:thread:``, or None for a non-thread key."""
    base, thread = parse_thread_session_suffix(key)
    return (base.strip() or None) if thread else None


def is_thread_session_key(key: str | None) -> bool:
    return parse_thread_session_suffix(key)[1] is not None


# --- groups and kinds -----------------------------------------------------------------


def parse_group_key(key: str | None) -> GroupKey | None:
    """``<channel>:group|channel:<id…>`` in the rest (or the whole relative key)."""
    parsed = parse_agent_session_key(key)
    raw = parsed.rest if parsed else normalize_session_key(key)
    parts = [part for part in raw.split(":") if part]
    if len(parts) < 3 or parts[1] not in _GROUP_KINDS:
        return None
    return GroupKey(channel=parts[0], kind=parts[1], id=":".join(parts[2:]))


def _is_group_key(key: str) -> bool:
    return bool(parse_group_key(key)) or ":group:" in key or ":channel:" in key


def _is_direct_key(key: str) -> bool:
    parsed = parse_agent_session_key(key)
    segments = (parsed.rest if parsed else key).split(":")
    return any(segment in _DIRECT_SEGMENTS for segment in segments[:-1])


def classify_session_kind(key: str | None, *, main_key: str = DEFAULT_MAIN_KEY) -> SessionKind:
    """The family of a key (fills ``Session.kind``); first matching rule wins.

    Specials, then the agent's main key (rest == ``main_key``), cron, subagent, acp,
    dashboard, hook, group/channel, direct (a ``direct``/``dm`` segment), else other.
    """
    lowered = normalize_session_key(key)
    if lowered in _SPECIAL_KEYS:
        return lowered  # type: ignore[return-value]
    parsed = parse_agent_session_key(lowered)
    if parsed and parsed.rest == normalize_main_key(main_key):
        return "main"
    for kind, matches in _PREFIX_KINDS:
        if matches(lowered):
            return kind
    if _is_group_key(lowered):
        return "group"
    return "direct" if _is_direct_key(lowered) else "other"


_PREFIX_KINDS: tuple[tuple[SessionKind, Callable[[str | None], bool]], ...] = (
    ("cron", is_cron_session_key),
    ("subagent", is_subagent_session_key),
    ("acp", is_acp_session_key),
    ("dashboard", is_dashboard_session_key),
    ("hook", is_hook_session_key),
)

"""The gateway's config: an OpenClaw-compatible ``openclaw.json`` subset.

The file is JSON5 (comments and trailing commas welcome). :func:`load_config` parses and
validates it into a frozen :class:`GatewayConfig`; a missing file gives the built-in
default (one agent ``main``, the offline model, no auth). Unknown keys are ignored with a
warning naming them; invalid values raise :class:`ConfigError` naming the dotted key.
:func:`get_config` is the process-wide cached config read from
``settings.OPENCLAW_CONFIG_PATH``; :func:`override_config` swaps it in tests.
Every key, default and meaning is listed in ``docs/configuration.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import logging
import math
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import json5

from openclaw_site.errors import GatewayError

logger = logging.getLogger(__name__)

DEFAULT_AGENT_ID = "main"
DEFAULT_MAIN_KEY = "main"
OFFLINE_PROVIDER = "offline"
OFFLINE_MODEL = "scripted"
DEFAULT_MODEL = f"{OFFLINE_PROVIDER}/{OFFLINE_MODEL}"
DEFAULT_HEARTBEAT_PROMPT = (
    "Read HEARTBEAT.md if it exists (workspace context). Follow it strictly. Do not infer "
    "or repeat old tasks from prior chats. If nothing needs attention, reply HEARTBEAT_OK."
)
QUEUE_MODES = ("steer", "followup", "collect", "steer-backlog", "interrupt")
QUEUE_MODE_ALIASES = {"queue": "steer", "steer+backlog": "steer-backlog"}
QUEUE_DROPS = ("old", "new", "summarize")
AUTH_MODES = ("none", "token", "password")
PROVIDER_APIS = ("openai-completions",)
VISIBILITIES = ("self", "tree", "agent", "all")
PERMISSION_POLICIES = ("approve-reads", "approve-all", "deny-all")

_AGENT_ID_VALID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$", re.IGNORECASE)
_AGENT_ID_INVALID_RUN = re.compile(r"[^a-z0-9_-]+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$|^24:00$")
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class ConfigError(GatewayError):
    """An invalid value in the config; ``key`` is its dotted path (``agents.list[1].id``)."""

    code = "INVALID_REQUEST"
    default_message = "invalid config"

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        super().__init__(f"invalid config {key}: {reason}", details={"code": "INVALID_CONFIG", "key": key})


class UnknownModelError(ConfigError):
    """A model reference whose provider is neither configured nor built in."""


# ---------------------------------------------------------------------------
# The parsed config
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HeartbeatConfig:
    """The effective heartbeat of one agent (defaults shallow-merged with its block)."""

    every_ms: int = 30 * 60_000
    prompt: str = DEFAULT_HEARTBEAT_PROMPT
    target: str = "none"
    to: str | None = None
    account_id: str | None = None
    session: str | None = None
    model: str | None = None
    ack_max_chars: int = 300
    active_hours: dict | None = None
    isolated_session: bool = False
    skip_when_busy: bool = False
    include_reasoning: bool = False
    light_context: bool = False
    timeout_seconds: int = 600


@dataclass(frozen=True)
class SubagentsConfig:
    """Sub-agent limits of one agent (``agents.defaults.subagents`` + its own block)."""

    max_spawn_depth: int = 1
    max_children_per_agent: int = 5
    max_concurrent: int = 8
    allow_agents: list[str] = field(default_factory=list)
    require_agent_id: bool = False
    run_timeout_seconds: int = 0
    archive_after_minutes: int = 60
    announce_timeout_ms: int = 120_000
    model: str | None = None
    thinking: str | None = None

    def allows(self, *, requester_agent_id: str, target_agent_id: str) -> bool:
        """True when the requester may spawn on the target: itself always, others per allowAgents."""
        target = _normalize_agent_id(target_agent_id)
        if target == _normalize_agent_id(requester_agent_id):
            return True
        return "*" in self.allow_agents or target in self.allow_agents


@dataclass(frozen=True)
class AgentConfig:
    """One agent. ``default`` is True for the effective default agent only; ``model`` is the
    effective ``provider/model`` (per agent > ``agents.defaults.model`` > ``offline/scripted``)."""

    id: str
    name: str
    default: bool = False
    model: str | None = None
    heartbeat: HeartbeatConfig | None = None
    subagents: SubagentsConfig = field(default_factory=SubagentsConfig)
    timeout_seconds: int = 600
    raw: dict = field(default_factory=dict)


@dataclass(frozen=True)
class QueueConfig:
    """What happens to a message that arrives while the session is busy (``messages.queue``)."""

    mode: str = "steer"
    debounce_ms: int = 500
    cap: int = 20
    drop: str = "summarize"
    by_channel: dict[str, str] = field(default_factory=dict)
    debounce_ms_by_channel: dict[str, int] = field(default_factory=dict)

    def for_channel(self, channel: str | None) -> QueueConfig:
        """The queue settings for one channel (``byChannel`` / ``debounceMsByChannel`` applied)."""
        channel = (channel or "").strip().lower()
        return dataclasses.replace(
            self,
            mode=self.by_channel.get(channel, self.mode),
            debounce_ms=self.debounce_ms_by_channel.get(channel, self.debounce_ms),
        )


@dataclass(frozen=True)
class ModelConfig:
    id: str
    name: str
    context_window: int | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class ProviderConfig:
    """A model provider; ``api`` is ``openai-completions`` or ``offline`` (the built-in one)."""

    name: str
    base_url: str = ""
    api_key: str = ""
    api: str = "openai-completions"
    models: list[ModelConfig] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def model(self, model_id: str) -> ModelConfig | None:
        """The declared model with this id, or None."""
        return next((m for m in self.models if m.id == model_id), None)


@dataclass(frozen=True)
class AuthConfig:
    """Shared-secret auth of the gateway (``gateway.auth`` filled from the environment)."""

    mode: str = "none"
    token: str = ""
    password: str = ""


def _offline_provider() -> ProviderConfig:
    return ProviderConfig(
        name=OFFLINE_PROVIDER, api="offline", models=[ModelConfig(id=OFFLINE_MODEL, name="Scripted offline model")]
    )


@dataclass(frozen=True)
class GatewayConfig:
    """The validated config. Build it with :func:`load_config`, never by hand."""

    raw: dict = field(default_factory=dict)
    path: str | None = None
    agent_list: tuple[AgentConfig, ...] = ()
    max_concurrent: int = 4
    main_key: str = DEFAULT_MAIN_KEY
    scope: str = "per-sender"
    send_policy: dict = field(default_factory=lambda: {"default": "allow", "rules": []})
    agent_to_agent_max_ping_pong_turns: int = 5
    sessions_visibility: str = "tree"
    tools_agent_to_agent: dict = field(default_factory=lambda: {"enabled": False, "allow": []})
    # tools.subagents.tools.{allow,deny}: the final filter on a sub-agent's tools (spec-b §1.8).
    tools_subagents: dict = field(default_factory=lambda: {"allow": [], "deny": []})
    queue_defaults: QueueConfig = field(default_factory=QueueConfig)
    providers: dict[str, ProviderConfig] = field(default_factory=lambda: {OFFLINE_PROVIDER: _offline_provider()})
    acp: dict = field(default_factory=dict)
    cron: dict = field(default_factory=dict)
    auth: AuthConfig = field(default_factory=AuthConfig)

    def agents(self) -> list[AgentConfig]:
        """Every agent in config order (``[main]`` when none is configured)."""
        return list(self.agent_list) or [AgentConfig(id=DEFAULT_AGENT_ID, name=DEFAULT_AGENT_ID, default=True)]

    def agent_ids(self) -> list[str]:
        """Normalised agent ids in config order; ``["main"]`` when none is configured."""
        return [a.id for a in self.agents()]

    def default_agent_id(self) -> str:
        """The first agent with ``default: true``, else the first agent, else ``main``."""
        return next(a.id for a in self.agents() if a.default)

    def has_agent(self, agent_id: str | None) -> bool:
        """True when the (normalised) id names a configured agent."""
        return self.agent(agent_id) is not None

    def agent(self, agent_id: str | None) -> AgentConfig | None:
        """The agent with this (normalised) id, or None."""
        wanted = _normalize_agent_id(agent_id)
        return next((a for a in self.agents() if a.id == wanted), None)

    def heartbeat_agents(self) -> list[AgentConfig]:
        """The agents whose heartbeat is scheduled (a heartbeat with a non-zero interval)."""
        return [a for a in self.agents() if a.heartbeat is not None]

    def main_session_key(self) -> str:
        """``global`` with ``session.scope = global``, else the default agent's main key."""
        if self.scope == "global":
            return "global"
        return self.agent_main_session_key(self.default_agent_id())

    def agent_main_session_key(self, agent_id: str | None) -> str:
        """``agent:<id>:<mainKey>`` for this agent, whatever the scope."""
        return f"agent:{_normalize_agent_id(agent_id)}:{self.main_key}"

    def resolve_model(self, ref: str | None) -> tuple[str, str]:
        """``(provider, model_id)`` of a ``provider/model`` reference; None → the offline model.

        A bare model id resolves to the provider that declares it, or to the only configured
        provider. Raises :class:`UnknownModelError` when no provider matches.
        """
        return _resolve_model(self.providers, ref, key="model")

    def as_dict(self) -> dict:
        """The normalised config as plain data, secrets replaced by ``"<set>"`` / ``""``."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("raw", "path")}
        data = json.loads(json.dumps(_plain(data), default=str))
        data["agent_list"] = [{k: v for k, v in a.items() if k != "raw"} for a in data["agent_list"]]
        data["auth"] = {**data["auth"], "token": _redact(self.auth.token), "password": _redact(self.auth.password)}
        for provider in data["providers"].values():
            provider["api_key"] = _redact(provider["api_key"])
            provider["headers"] = {name: _redact(value) for name, value in provider["headers"].items()}
        for agent in data["acp"].get("agents", {}).values():
            agent["env"] = {name: _redact(value) for name, value in agent["env"].items()}
        if data["cron"].get("webhookToken"):
            data["cron"]["webhookToken"] = "<set>"
        return data

    def hash(self) -> str:
        """A stable ``sha256:<hex>`` digest of :meth:`as_dict` (changes when the config does)."""
        encoded = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(encoded).hexdigest()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _redact(secret: str) -> str:
    return "<set>" if secret else ""


# ---------------------------------------------------------------------------
# Loading and the process-wide cache
# ---------------------------------------------------------------------------


def load_config(path: str | Path | None = None, *, data: dict | None = None) -> GatewayConfig:
    """Parse and validate a config from ``data`` or the JSON5 file at ``path``.

    No data and no existing file → the built-in default. ``path`` is recorded as given.
    Raises :class:`ConfigError` naming the key of the first invalid value.
    """
    if data is None:
        data = _read_file(Path(path)) if path is not None else {}
    if not isinstance(data, dict):
        raise ConfigError("<root>", "the config must be an object")
    return _build(data, path=str(path) if path is not None else None)


def _read_file(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json5.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError("<root>", f"cannot read {path}: {exc}") from exc
    except ValueError as exc:
        raise ConfigError("<root>", f"{path} is not valid JSON5: {exc}") from exc


_cache_lock = threading.Lock()
_cache: dict[str, Any] = {"key": None, "config": None}
_overrides: list[GatewayConfig] = []


def get_config() -> GatewayConfig:
    """The config of ``settings.OPENCLAW_CONFIG_PATH``, loaded once per process.

    Reloaded when the path or the gateway token/password settings change; an active
    :func:`override_config` wins.
    """
    if _overrides:
        return _overrides[-1]
    from django.conf import settings

    path = settings.OPENCLAW_CONFIG_PATH
    cache_key = (str(path), *_env_secrets())
    with _cache_lock:
        if _cache["key"] != cache_key or _cache["config"] is None:
            _cache["config"] = load_config(path)
            _cache["key"] = cache_key
        return _cache["config"]


def reset_config_cache() -> None:
    """Forget the cached config; the next :func:`get_config` reads the file again."""
    with _cache_lock:
        _cache["key"] = _cache["config"] = None


class override_config:
    """Context manager and decorator (sync or async) that makes :func:`get_config` return
    ``load_config(data=data)`` until it exits, then restores what was there."""

    def __init__(self, data: dict) -> None:
        self.data = data

    def __enter__(self) -> GatewayConfig:
        self.config = load_config(data=self.data)
        _overrides.append(self.config)
        return self.config

    def __exit__(self, *exc_info: object) -> None:
        _overrides.remove(self.config)

    def __call__(self, func: Callable) -> Callable:
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with override_config(self.data):
                    return await func(*args, **kwargs)

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with override_config(self.data):
                return func(*args, **kwargs)

        return wrapper


def _env_secrets() -> tuple[str, str]:
    """``(OPENCLAW_GATEWAY_TOKEN, OPENCLAW_GATEWAY_PASSWORD)`` from the Django settings."""
    from django.conf import settings

    if not settings.configured:
        return "", ""
    return (
        getattr(settings, "OPENCLAW_GATEWAY_TOKEN", "") or "",
        getattr(settings, "OPENCLAW_GATEWAY_PASSWORD", "") or "",
    )


# ---------------------------------------------------------------------------
# Reading values: a section of the config at a dotted key
# ---------------------------------------------------------------------------

_MISSING = object()


class _Section:
    """A dict found at a dotted key; typed getters raise ConfigError naming the key.

    ``known`` lists its keys (others are warned about); None marks a map of free names."""

    def __init__(self, value: Any, key: str, known: Iterable[str] | None, *, warn: bool = True) -> None:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(key or "<root>", "must be an object")
        self.data, self.key, self.warn = value, key, warn
        if warn and known is not None:
            _warn_unknown(value, key, frozenset(known))

    def path(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def get(self, name: str) -> Any:
        """The value, or ``_MISSING`` when absent or null."""
        value = self.data.get(name)
        return _MISSING if value is None else value

    def has(self, name: str) -> bool:
        return self.get(name) is not _MISSING

    def section(self, name: str, known: Iterable[str] | None, *, warn: bool = True) -> _Section:
        return _Section(self.data.get(name), self.path(name), known, warn=warn)

    def text(self, name: str, default: Any = None, *, choices: Iterable[str] | None = None) -> Any:
        value = self.get(name)
        if value is _MISSING:
            return default
        if not isinstance(value, str):
            raise ConfigError(self.path(name), f"must be a string, got {_type_name(value)}")
        if choices is not None and value not in choices:
            raise ConfigError(self.path(name), f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.get(name)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise ConfigError(self.path(name), f"must be true or false, got {_type_name(value)}")
        return value

    def number(self, name: str, default: Any, *, minimum: int = 0, maximum: int | None = None) -> Any:
        value = self.get(name)
        if value is _MISSING:
            return default
        return _check_int(value, self.path(name), minimum=minimum, maximum=maximum)

    def duration_ms(self, name: str, default: Any, *, unit: str = "m") -> Any:
        value = self.get(name)
        if value is _MISSING:
            return default
        return parse_duration_ms(value, key=self.path(name), unit=unit)

    def text_list(self, name: str) -> list[str]:
        value = self.get(name)
        if value is _MISSING:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(self.path(name), "must be a list of strings")
        return list(value)

    def text_dict(self, name: str) -> dict[str, str]:
        value = self.get(name)
        if value is _MISSING:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(self.path(name), "must be an object of strings")
        return dict(value)


_TYPE_NAMES = {
    bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object",
}  # fmt: skip


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _check_int(value: Any, key: str, *, minimum: int = 0, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
        raise ConfigError(key, f"must be a whole number, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(key, f"must be {bound}, got {value}")
    return value


def _warn_unknown(data: dict, key: str, known: frozenset[str]) -> None:
    for name in data:
        if name not in known:
            logger.warning("unknown config key %s ignored", f"{key}.{name}" if key else name)


def parse_duration_ms(value: Any, *, key: str = "duration", unit: str = "m") -> int:
    """Milliseconds of ``"30m"``, ``"1h30m"``, ``"45s"``, ``"500ms"``, ``"2d"``; a bare number is
    in ``unit`` (minutes unless told). Raises ConfigError for anything else or a negative value."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(key, f"must be a duration such as \"30m\", got {_type_name(value)}")
    text = str(value).strip().lower()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        text += unit
    parts = _DURATION_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ConfigError(key, f"must be a duration such as \"30m\", \"1h\" or \"45s\", got {value!r}")
    total = sum(float(n) * _DURATION_UNITS_MS[u] for n, u in parts)
    if not math.isfinite(total):
        raise ConfigError(key, f"is too long a duration: {value!r}")
    return int(math.floor(total))


def _normalize_agent_id(value: str | None) -> str:
    """Trim; valid ids lowercase; otherwise runs of invalid characters become ``-``, dashes
    are stripped at the ends, the result is cut to 64; empty → ``main``."""
    text = (value or "").strip()
    if _AGENT_ID_VALID.match(text):
        return text.lower()
    text = _AGENT_ID_INVALID_RUN.sub("-", text.lower()).strip("-")[:64]
    return text or DEFAULT_AGENT_ID


def _normalize_main_key(value: str | None) -> str:
    return (value or "").strip().lower() or DEFAULT_MAIN_KEY


def _env_ref(value: str, key: str) -> str:
    """``"${NAME}"`` → the environment variable (OpenClaw's substitution); anything else as is."""
    match = _ENV_REF.match(value)
    if not match:
        return value
    if match.group(1) not in os.environ:
        raise ConfigError(key, f"refers to the unset environment variable {match.group(1)}")
    return os.environ[match.group(1)]


# ---------------------------------------------------------------------------
# Building the config, one section at a time
# ---------------------------------------------------------------------------

_ROOT_KEYS = (
    "agents", "session", "tools", "messages", "models", "acp", "cron", "gateway",
    "$schema", "meta", "bindings", "channels",
)  # fmt: skip


def _build(data: dict, *, path: str | None) -> GatewayConfig:
    root = _Section(data, "", _ROOT_KEYS)
    providers = _parse_providers(root.section("models", ("mode", "providers")))
    session = root.section("session", _SESSION_KEYS)
    agents = root.section("agents", ("defaults", "list"))
    defaults = agents.section("defaults", _AGENT_DEFAULTS_KEYS)
    return GatewayConfig(
        raw=data,
        path=path,
        agent_list=_parse_agents(agents, defaults, providers),
        max_concurrent=defaults.number("maxConcurrent", 4, minimum=1),
        main_key=_normalize_main_key(session.text("mainKey")),
        scope=session.text("scope", "per-sender", choices=("per-sender", "global")),
        send_policy=_parse_send_policy(session.section("sendPolicy", ("default", "rules"))),
        agent_to_agent_max_ping_pong_turns=session.section("agentToAgent", ("maxPingPongTurns",)).number(
            "maxPingPongTurns", 5, minimum=0, maximum=5
        ),
        **_parse_tools(root.section("tools", _TOOLS_KEYS)),
        queue_defaults=_parse_queue(root.section("messages", _MESSAGES_KEYS).section("queue", _QUEUE_KEYS)),
        providers=providers,
        acp=_parse_acp(root.section("acp", _ACP_KEYS)),
        cron=_parse_cron(root.section("cron", _CRON_KEYS)),
        auth=_parse_auth(root.section("gateway", ("auth", "port", "bind", "mode")).section("auth", _AUTH_KEYS)),
    )


# --- agents ----------------------------------------------------------------

_AGENT_DEFAULTS_KEYS = (
    "model", "workspace", "heartbeat", "maxConcurrent", "subagents", "timeoutSeconds", "userTimezone",
    "envelopeTimezone", "thinkingDefault", "models", "sandbox",
)  # fmt: skip
_AGENT_KEYS = (
    "id", "default", "name", "workspace", "agentDir", "model", "skills", "heartbeat", "identity", "groupChat",
    "subagents", "sandbox", "tools", "memorySearch", "humanDelay", "timeoutSeconds",
)  # fmt: skip


def _parse_agents(agents: _Section, defaults: _Section, providers: dict) -> tuple[AgentConfig, ...]:
    """The agents with their effective model, heartbeat (spec-a §3.2) and sub-agent limits."""
    entries = _agent_entries(agents)
    default_model = _model_ref(defaults, "model", providers) or DEFAULT_MODEL
    base_heartbeat = _heartbeat_block(defaults, providers)
    base_subagents = _subagents_block(defaults, providers)
    timeout = defaults.number("timeoutSeconds", 600, minimum=1)
    default_index = _default_index(entries)
    any_block = any(e.has("heartbeat") for e in entries)
    built = []
    for index, entry in enumerate(entries):
        is_default = index == default_index
        runs_heartbeat = entry.has("heartbeat") if any_block else (base_heartbeat is not None or is_default)
        built.append(
            AgentConfig(
                id=_normalize_agent_id(entry.data["id"]),
                name=entry.text("name") or _normalize_agent_id(entry.data["id"]),
                default=is_default,
                model=_model_ref(entry, "model", providers) or default_model,
                heartbeat=_heartbeat_for(entry, base_heartbeat, providers) if runs_heartbeat else None,
                subagents=_subagents_for(entry, base_subagents, providers),
                timeout_seconds=entry.number("timeoutSeconds", timeout, minimum=1),
                raw=entry.data,
            )
        )
    if not built:
        built.append(_implicit_main(default_model, base_heartbeat, base_subagents, timeout, defaults, providers))
    return tuple(built)


def _implicit_main(
    model: str, heartbeat: dict | None, subagents: dict, timeout: int, defaults: _Section, providers: dict
) -> AgentConfig:
    """The agent ``main`` of a config without ``agents.list``; it runs the default heartbeat."""
    empty = _Section({}, "agents.defaults", ())
    return AgentConfig(
        id=DEFAULT_AGENT_ID,
        name=DEFAULT_AGENT_ID,
        default=True,
        model=model,
        heartbeat=_heartbeat_for(empty, heartbeat, providers, key=defaults.path("heartbeat")),
        subagents=_subagents_for(empty, subagents, providers),
        timeout_seconds=timeout,
    )


def _agent_entries(agents: _Section) -> list[_Section]:
    """The ``agents.list`` entries, each checked for an id and for duplicate ids."""
    value = agents.get("list")
    if value is _MISSING:
        return []
    if not isinstance(value, list):
        raise ConfigError("agents.list", f"must be a list, got {_type_name(value)}")
    entries, seen = [], {}
    for index, item in enumerate(value):
        entry = _Section(item, f"agents.list[{index}]", _AGENT_KEYS)
        raw_id = entry.text("id")
        if raw_id is None or not raw_id.strip():
            raise ConfigError(entry.path("id"), "an agent needs an id")
        agent_id = _normalize_agent_id(raw_id)
        if agent_id in seen:
            raise ConfigError(entry.path("id"), f'duplicate agent id "{agent_id}" (first at {seen[agent_id]})')
        seen[agent_id] = entry.path("id")
        entry.flag("default", False)
        entries.append(entry)
    return entries


def _default_index(entries: list[_Section]) -> int:
    """Index of the first entry with ``default: true`` (warns if several), else 0."""
    flagged = [i for i, e in enumerate(entries) if e.data.get("default") is True]
    if len(flagged) > 1:
        logger.warning(
            "several agents have default: true (%s); using %s",
            ", ".join(str(entries[i].data["id"]) for i in flagged),
            entries[flagged[0]].data["id"],
        )
    return flagged[0] if flagged else 0


def _model_ref(section: _Section, name: str, providers: dict) -> str | None:
    """A model given as ``"provider/model"`` or ``{primary: "provider/model"}``, checked
    against the providers; None when absent."""
    value = section.get(name)
    if value is _MISSING:
        return None
    key = section.path(name)
    if isinstance(value, dict):
        if section.warn:
            _warn_unknown(value, key, frozenset(("primary", "fallbacks")))
        value, key = value.get("primary"), f"{key}.primary"
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, 'must be a model reference such as "provider/model"')
    provider, model_id = _resolve_model(providers, value, key=key)
    return f"{provider}/{model_id}"


def _resolve_model(providers: dict[str, ProviderConfig], ref: str | None, *, key: str) -> tuple[str, str]:
    ref = (ref or "").strip()
    if not ref:
        return OFFLINE_PROVIDER, OFFLINE_MODEL
    if "/" in ref:
        provider, model_id = ref.split("/", 1)
        if provider not in providers or not model_id:
            raise UnknownModelError(key, f'unknown model provider in "{ref}" (known: {", ".join(providers)})')
        return provider, model_id
    declaring = [p.name for p in providers.values() if p.model(ref)]
    configured = [name for name in providers if name != OFFLINE_PROVIDER]
    if declaring:
        return declaring[0], ref
    if len(configured) == 1:
        return configured[0], ref
    raise UnknownModelError(key, f'cannot tell the provider of model "{ref}"; write it as "provider/{ref}"')


# --- heartbeat -------------------------------------------------------------

_HEARTBEAT_KEYS = (
    "every", "activeHours", "target", "to", "accountId", "prompt", "ackMaxChars", "session", "model",
    "includeReasoning", "isolatedSession", "lightContext", "skipWhenBusy", "timeoutSeconds",
    "suppressToolErrorWarnings", "directPolicy",
)  # fmt: skip


def _heartbeat_block(section: _Section, providers: dict) -> dict | None:
    """The ``heartbeat`` block of a section, validated on its own; None when absent."""
    if not section.has("heartbeat"):
        return None
    block = section.section("heartbeat", _HEARTBEAT_KEYS)
    _heartbeat_from(block, providers)
    return block.data


def _heartbeat_for(
    entry: _Section, base: dict | None, providers: dict, *, key: str | None = None
) -> HeartbeatConfig | None:
    """An agent's heartbeat: ``base`` shallow-merged with its own block; None when the
    interval is 0 (not scheduled)."""
    own = _heartbeat_block(entry, providers) or {}
    merged = _Section({**(base or {}), **own}, key or entry.path("heartbeat"), (), warn=False)
    heartbeat = _heartbeat_from(merged, providers)
    return heartbeat if heartbeat.every_ms > 0 else None


def _heartbeat_from(block: _Section, providers: dict) -> HeartbeatConfig:
    every_ms = block.duration_ms("every", 30 * 60_000)
    return HeartbeatConfig(
        every_ms=every_ms,
        prompt=block.text("prompt") or DEFAULT_HEARTBEAT_PROMPT,
        target=block.text("target", "none"),
        to=block.text("to"),
        account_id=block.text("accountId"),
        session=block.text("session"),
        model=_model_ref(block, "model", providers),
        ack_max_chars=block.number("ackMaxChars", 300),
        active_hours=_active_hours(block),
        isolated_session=block.flag("isolatedSession", False),
        skip_when_busy=block.flag("skipWhenBusy", False),
        include_reasoning=block.flag("includeReasoning", False),
        light_context=block.flag("lightContext", False),
        timeout_seconds=block.number("timeoutSeconds", min(600, every_ms // 1000) or 600, minimum=1),
    )


def _active_hours(block: _Section) -> dict | None:
    if not block.has("activeHours"):
        return None
    hours = block.section("activeHours", ("start", "end", "timezone"), warn=False)
    for name in ("start", "end"):
        value = hours.text(name)
        if value is None or not _CLOCK.match(value) or (name == "start" and value == "24:00"):
            raise ConfigError(hours.path(name), f'must be a time "HH:MM", got {value!r}')
    return {"start": hours.data["start"], "end": hours.data["end"], "timezone": hours.text("timezone", "user")}


# --- subagents -------------------------------------------------------------

_SUBAGENT_KEYS = (
    "maxSpawnDepth", "maxChildrenPerAgent", "maxConcurrent", "allowAgents", "requireAgentId",
    "runTimeoutSeconds", "archiveAfterMinutes", "announceTimeoutMs", "model", "thinking",
)  # fmt: skip


def _subagents_block(section: _Section, providers: dict) -> dict:
    block = section.section("subagents", _SUBAGENT_KEYS)
    _subagents_from(block, providers)
    return block.data


def _subagents_for(entry: _Section, base: dict, providers: dict) -> SubagentsConfig:
    """``agents.defaults.subagents`` with the agent's own ``subagents`` keys on top."""
    own = _subagents_block(entry, providers)
    return _subagents_from(_Section({**base, **own}, entry.path("subagents"), (), warn=False), providers)


def _subagents_from(block: _Section, providers: dict) -> SubagentsConfig:
    allow = block.text_list("allowAgents")
    return SubagentsConfig(
        max_spawn_depth=block.number("maxSpawnDepth", 1, minimum=1, maximum=5),
        max_children_per_agent=block.number("maxChildrenPerAgent", 5, minimum=1, maximum=20),
        max_concurrent=block.number("maxConcurrent", 8, minimum=1),
        allow_agents=["*" if a.strip() == "*" else _normalize_agent_id(a) for a in allow],
        require_agent_id=block.flag("requireAgentId", False),
        run_timeout_seconds=block.number("runTimeoutSeconds", 0),
        archive_after_minutes=block.number("archiveAfterMinutes", 60),
        announce_timeout_ms=block.number("announceTimeoutMs", 120_000, minimum=1),
        model=_model_ref(block, "model", providers),
        thinking=block.text("thinking"),
    )


# --- session, tools, messages ------------------------------------------------

_SESSION_KEYS = (
    "scope", "dmScope", "mainKey", "identityLinks", "reset", "resetByType", "resetByChannel", "resetTriggers",
    "store", "sendPolicy", "typingMode", "idleMinutes", "agentToAgent",
)  # fmt: skip
_TOOLS_KEYS = ("sessions", "agentToAgent", "subagents", "sessions_spawn", "allow", "deny", "profile")
_MESSAGES_KEYS = ("queue", "responsePrefix", "ackReaction", "ackReactionScope", "inbound", "groupChat")
_QUEUE_KEYS = ("mode", "debounceMs", "cap", "drop", "byChannel", "debounceMsByChannel")


def _parse_send_policy(policy: _Section) -> dict:
    """``session.sendPolicy`` as ``{default, rules: [{action, match}]}``."""
    rules = policy.get("rules")
    rules = [] if rules is _MISSING else rules
    if not isinstance(rules, list):
        raise ConfigError(policy.path("rules"), "must be a list")
    return {
        "default": policy.text("default", "allow", choices=("allow", "deny")),
        "rules": [_send_rule(rule, policy.path(f"rules[{i}]")) for i, rule in enumerate(rules)],
    }


def _send_rule(value: Any, key: str) -> dict:
    rule = _Section(value, key, ("action", "match"))
    if not rule.has("action"):
        raise ConfigError(rule.path("action"), "a send policy rule needs an action (allow or deny)")
    match = rule.section("match", ("channel", "chatType", "keyPrefix"))
    return {
        "action": rule.text("action", choices=("allow", "deny")),
        "match": {name: match.text(name) for name in ("channel", "chatType", "keyPrefix") if match.has(name)},
    }


def _parse_tools(tools: _Section) -> dict:
    sessions = tools.section("sessions", ("visibility",))
    a2a = tools.section("agentToAgent", ("enabled", "allow"))
    subagent_tools = tools.section("subagents", ("tools",)).section("tools", ("allow", "deny"))
    return {
        "sessions_visibility": sessions.text("visibility", "tree", choices=VISIBILITIES),
        "tools_agent_to_agent": {"enabled": a2a.flag("enabled", False), "allow": a2a.text_list("allow")},
        "tools_subagents": {"allow": subagent_tools.text_list("allow"), "deny": subagent_tools.text_list("deny")},
    }


def _parse_queue(queue: _Section) -> QueueConfig:
    """``messages.queue``; ``queue`` is the legacy alias of ``steer``, a cap below 1 is ignored."""
    by_channel = queue.section("byChannel", None)
    debounce_by_channel = queue.section("debounceMsByChannel", None)
    return QueueConfig(
        mode=_queue_mode(queue.text("mode", "steer"), queue.path("mode")),
        debounce_ms=queue.duration_ms("debounceMs", 500, unit="ms"),
        cap=queue.number("cap", 20) or 20,
        drop=queue.text("drop", "summarize", choices=QUEUE_DROPS),
        by_channel={
            ch.lower(): _queue_mode(by_channel.text(ch, ""), by_channel.path(ch)) for ch in by_channel.data
        },
        debounce_ms_by_channel={
            ch.lower(): debounce_by_channel.duration_ms(ch, 0, unit="ms") for ch in debounce_by_channel.data
        },
    )


def _queue_mode(value: str, key: str) -> str:
    mode = QUEUE_MODE_ALIASES.get(value.strip().lower(), value.strip().lower())
    if mode not in QUEUE_MODES:
        raise ConfigError(key, f"must be one of {', '.join(QUEUE_MODES)} (or queue); got {value!r}")
    return mode


# --- models.providers --------------------------------------------------------

_PROVIDER_KEYS = ("baseUrl", "apiKey", "api", "models", "headers", "authHeader")
_MODEL_KEYS = ("id", "name", "contextWindow", "maxTokens", "reasoning", "input", "cost", "api")


def _parse_providers(models: _Section) -> dict[str, ProviderConfig]:
    """``models.providers``, after the built-in ``offline`` provider (a reserved name)."""
    section = models.section("providers", None)
    providers = {OFFLINE_PROVIDER: _offline_provider()}
    for name in section.data:
        if name == OFFLINE_PROVIDER:
            _offline_block(section.data[name], section.path(name))
            continue
        providers[name] = _provider(name, section.section(name, _PROVIDER_KEYS))
    return providers


def _offline_block(value: Any, key: str) -> None:
    """The built-in model takes only its rules file (``docs/offline-model.md``)."""
    if not isinstance(value, dict) or set(value) - {"rulesPath"}:
        raise ConfigError(key, "the provider name offline is reserved for the built-in model (only rulesPath may be set)")
    _Section(value, key, ("rulesPath",)).text("rulesPath")


def _provider(name: str, block: _Section) -> ProviderConfig:
    base_url = block.text("baseUrl")
    if not base_url or not base_url.strip():
        raise ConfigError(block.path("baseUrl"), "a provider needs a baseUrl")
    models = block.get("models")
    models = [] if models is _MISSING else models
    if not isinstance(models, list):
        raise ConfigError(block.path("models"), "must be a list")
    return ProviderConfig(
        name=name,
        base_url=base_url.strip().rstrip("/"),
        api_key=_env_ref(block.text("apiKey", ""), block.path("apiKey")),
        api=block.text("api", "openai-completions", choices=PROVIDER_APIS),
        models=[_model(m, block.path(f"models[{i}]")) for i, m in enumerate(models)],
        headers=block.text_dict("headers"),
    )


def _model(value: Any, key: str) -> ModelConfig:
    block = _Section(value, key, _MODEL_KEYS)
    model_id = block.text("id")
    if not model_id or not model_id.strip():
        raise ConfigError(block.path("id"), "a model needs an id")
    return ModelConfig(
        id=model_id.strip(),
        name=block.text("name") or model_id.strip(),
        context_window=block.number("contextWindow", None, minimum=1),
        max_tokens=block.number("maxTokens", None, minimum=1),
    )


# --- acp, cron, gateway.auth -------------------------------------------------

_ACP_KEYS = (
    "enabled", "backend", "defaultAgent", "allowedAgents", "maxConcurrentSessions", "agents", "runtime",
    "delegate", "permissionPolicy", "dispatch", "stream",
)  # fmt: skip
_CRON_KEYS = ("enabled", "maxConcurrentRuns", "sessionRetention", "webhookToken", "webhook", "store", "runLog")
_AUTH_KEYS = ("mode", "token", "password")
_DELEGATE_KEYS = ("idleHours", "maxAgeHours", "idleMinutes", "maxAgeMinutes")


def _parse_acp(acp: _Section) -> dict:
    """``acp`` normalised: every key present, defaults filled, delegate limits in minutes."""
    default_agent = acp.text("defaultAgent")
    return {
        "enabled": acp.flag("enabled", True),
        "backend": acp.text("backend", "acpx"),
        "defaultAgent": _normalize_agent_id(default_agent) if default_agent else None,
        "allowedAgents": [_normalize_agent_id(a) for a in acp.text_list("allowedAgents")],
        "maxConcurrentSessions": acp.number("maxConcurrentSessions", 8, minimum=1),
        "agents": _acp_agents(acp.section("agents", None)),
        "runtime": {"ttlMinutes": acp.section("runtime", ("ttlMinutes",)).number("ttlMinutes", 10)},
        "delegate": _acp_delegate(acp.section("delegate", _DELEGATE_KEYS)),
        "permissionPolicy": acp.text("permissionPolicy", "approve-reads", choices=PERMISSION_POLICIES),
        "dispatch": {"enabled": acp.section("dispatch", ("enabled",)).flag("enabled", True)},
    }


def _acp_agents(agents: _Section) -> dict[str, dict]:
    """``acp.agents.<id>``: the harness command line of each ACP agent."""
    result = {}
    for name in agents.data:
        block = agents.section(name, ("command", "args", "env", "cwd"))
        command = block.text("command")
        if not command or not command.strip():
            raise ConfigError(block.path("command"), "an ACP agent needs a command")
        result[_normalize_agent_id(name)] = {
            "command": command,
            "args": block.text_list("args"),
            "env": block.text_dict("env"),
            "cwd": block.text("cwd"),
        }
    return result


def _acp_delegate(delegate: _Section) -> dict:
    """Idle and max-age limits of hub-delegated workers in minutes (0 = no limit); the
    ``…Minutes`` keys beat OpenClaw's ``…Hours`` keys."""
    return {
        "idleMinutes": delegate.number("idleMinutes", delegate.number("idleHours", 72) * 60),
        "maxAgeMinutes": delegate.number("maxAgeMinutes", delegate.number("maxAgeHours", 168) * 60),
    }


def _parse_cron(cron: _Section) -> dict:
    """``cron`` normalised; ``sessionRetentionMs`` is None when retention is ``false``."""
    retention = cron.get("sessionRetention")
    retention = "24h" if retention is _MISSING else retention
    run_log = cron.section("runLog", ("maxBytes", "keepLines"))
    return {
        "enabled": cron.flag("enabled", True),
        "maxConcurrentRuns": cron.number("maxConcurrentRuns", 1, minimum=1),
        "sessionRetention": retention,
        "sessionRetentionMs": _retention_ms(retention, cron.path("sessionRetention")),
        "webhookToken": cron.text("webhookToken"),
        "store": cron.text("store"),
        "runLog": {
            "maxBytes": run_log.number("maxBytes", 2_000_000, minimum=1),
            "keepLines": run_log.number("keepLines", 2000, minimum=1),
        },
    }


def _retention_ms(value: Any, key: str) -> int | None:
    if value is False:
        return None
    if value is True:
        raise ConfigError(key, 'must be a duration such as "24h" or false')
    return parse_duration_ms(value, key=key)


def _parse_auth(auth: _Section) -> AuthConfig:
    """``gateway.auth`` with ``OPENCLAW_GATEWAY_TOKEN`` / ``_PASSWORD`` settings on top. No
    mode → ``token`` if a token is set, else ``password`` if a password is, else ``none``."""
    env_token, env_password = _env_secrets()
    token = env_token or _env_ref(auth.text("token", ""), auth.path("token"))
    password = env_password or _env_ref(auth.text("password", ""), auth.path("password"))
    implied = "token" if token else "password" if password else "none"
    mode = auth.text("mode", implied, choices=AUTH_MODES)
    if mode == "token" and not token:
        raise ConfigError(auth.path("token"), "mode token needs a token (or OPENCLAW_GATEWAY_TOKEN)")
    if mode == "password" and not password:
        raise ConfigError(auth.path("password"), "mode password needs a password (or OPENCLAW_GATEWAY_PASSWORD)")
    return AuthConfig(mode=mode, token=token, password=password)

"""openclaw.json loading: defaults, agents, heartbeats, validation, the cache and overrides."""

import asyncio
import logging

import json5
import pytest

from openclaw_site.config import (
    DEFAULT_HEARTBEAT_PROMPT,
    AuthConfig,
    ConfigError,
    UnknownModelError,
    get_config,
    load_config,
    override_config,
    parse_duration_ms,
    reset_config_cache,
)
from openclaw_site.errors import GatewayError

MULTI = {
    "agents": {
        "list": [
            {"id": "primary"},
            {"id": "ops", "default": True, "name": "Operations"},
            {"id": "research"},
        ]
    }
}


@pytest.fixture(autouse=True)
def clean_environment(settings):
    """No gateway secrets from the environment and no cached config leak between tests."""
    settings.OPENCLAW_GATEWAY_TOKEN = ""
    settings.OPENCLAW_GATEWAY_PASSWORD = ""
    reset_config_cache()
    yield
    reset_config_cache()


def write(tmp_path, text):
    path = tmp_path / "openclaw.json"
    path.write_text(text)
    return path


# --- defaults --------------------------------------------------------------------------


def test_load_config_without_file_is_the_builtin_default(tmp_path):
    """A missing file gives one agent main on the offline model, no auth."""
    config = load_config(tmp_path / "missing.json")
    assert config.agent_ids() == ["main"]
    assert config.default_agent_id() == "main"
    assert config.main_session_key() == "agent:main:main"
    assert config.agent("main").model == "offline/scripted"
    assert config.auth.mode == "none"
    assert config.raw == {}
    assert config.path == str(tmp_path / "missing.json")


def test_load_config_without_arguments_is_the_builtin_default():
    """load_config() reads nothing and returns the default."""
    config = load_config()
    assert config.path is None
    assert [a.id for a in config.agents()] == ["main"]
    assert config.agents()[0].default is True


def test_default_config_values_follow_the_spec():
    """Session, tools, subagents and timeouts defaults of the OpenClaw quick reference."""
    config = load_config(data={})
    main = config.agent("main")
    assert (config.main_key, config.scope) == ("main", "per-sender")
    assert config.send_policy == {"default": "allow", "rules": []}
    assert config.agent_to_agent_max_ping_pong_turns == 5
    assert config.sessions_visibility == "tree"
    assert config.tools_agent_to_agent == {"enabled": False, "allow": []}
    assert main.timeout_seconds == 600
    sub = main.subagents
    assert (sub.max_spawn_depth, sub.max_children_per_agent, sub.max_concurrent) == (1, 5, 8)
    assert (sub.allow_agents, sub.require_agent_id, sub.run_timeout_seconds, sub.archive_after_minutes) == (
        [],
        False,
        0,
        60,
    )


def test_default_queue_is_steer_with_500ms_debounce():
    """messages.queue defaults to the newer baseline of spec-a §7.2."""
    queue = load_config(data={}).queue_defaults
    assert (queue.mode, queue.debounce_ms, queue.cap, queue.drop) == ("steer", 500, 20, "summarize")


def test_default_acp_and_cron_are_normalised():
    """acp and cron come back with every key filled in."""
    config = load_config(data={})
    assert config.acp["enabled"] is True
    assert config.acp["backend"] == "acpx"
    assert config.acp["runtime"] == {"ttlMinutes": 10}
    assert config.acp["delegate"] == {"idleMinutes": 72 * 60, "maxAgeMinutes": 168 * 60}
    assert config.acp["permissionPolicy"] == "approve-reads"
    assert config.cron["enabled"] is True
    assert config.cron["maxConcurrentRuns"] == 1
    assert config.cron["sessionRetentionMs"] == 24 * 3_600_000


# --- agents ----------------------------------------------------------------------------


def test_multi_agent_default_flag_picks_the_default_agent():
    """The entry with default: true is the default agent; the order of agent_ids is kept."""
    config = load_config(data=MULTI)
    assert config.agent_ids() == ["primary", "ops", "research"]
    assert config.default_agent_id() == "ops"
    assert [a.default for a in config.agents()] == [False, True, False]
    assert config.main_session_key() == "agent:ops:main"
    assert config.agent("ops").name == "Operations"
    assert config.agent("research").name == "research"


def test_multi_agent_without_default_flag_uses_the_first():
    """No default: true → the first listed agent."""
    config = load_config(data={"agents": {"list": [{"id": "alpha"}, {"id": "beta"}]}})
    assert config.default_agent_id() == "alpha"


def test_multi_agent_several_defaults_warn_and_the_first_wins(caplog):
    """Several default: true entries log a warning; the first flagged one wins."""
    data = {"agents": {"list": [{"id": "a"}, {"id": "b", "default": True}, {"id": "c", "default": True}]}}
    with caplog.at_level(logging.WARNING, logger="openclaw_site.config"):
        config = load_config(data=data)
    assert config.default_agent_id() == "b"
    assert "several agents have default: true" in caplog.text


def test_agent_ids_are_normalised_and_lookups_normalise():
    """Ids are trimmed, lowercased and sanitised; lookups accept any spelling."""
    config = load_config(data={"agents": {"list": [{"id": "  My Agent! "}, {"id": "OPS"}]}})
    assert config.agent_ids() == ["my-agent", "ops"]
    assert config.has_agent("Ops") is True
    assert config.agent(" OPS ").id == "ops"
    assert config.has_agent("nobody") is False
    assert config.agent("nobody") is None


def test_agent_main_session_key_uses_the_normalised_main_key():
    """session.mainKey is trimmed and lowercased; the main key is agent:<id>:<mainKey>."""
    config = load_config(data={**MULTI, "session": {"mainKey": "  Work "}})
    assert config.main_key == "work"
    assert config.agent_main_session_key("Research") == "agent:research:work"
    assert config.main_session_key() == "agent:ops:work"


def test_global_scope_changes_only_the_main_session_key():
    """scope global makes the main key 'global'; per-agent main keys ignore scope."""
    config = load_config(data={**MULTI, "session": {"scope": "global"}})
    assert config.main_session_key() == "global"
    assert config.agent_main_session_key("ops") == "agent:ops:main"


def test_agent_model_per_agent_beats_defaults():
    """A per-agent model (string or {primary}) beats agents.defaults.model."""
    data = {
        "models": {"providers": {"local": {"baseUrl": "http://127.0.0.1:11434/v1/", "models": [{"id": "qwen3"}]}}},
        "agents": {
            "defaults": {"model": {"primary": "local/qwen3"}},
            "list": [{"id": "main"}, {"id": "fast", "model": "offline/scripted"}],
        },
    }
    config = load_config(data=data)
    assert config.agent("main").model == "local/qwen3"
    assert config.agent("fast").model == "offline/scripted"
    assert config.providers["local"].base_url == "http://127.0.0.1:11434/v1"


# --- heartbeats (spec-a §3.2) ----------------------------------------------------------


def test_heartbeat_blocks_in_the_list_pick_exactly_those_agents():
    """With per-agent blocks only those agents run heartbeats, each shallow-merged over defaults."""
    data = {
        "agents": {
            "defaults": {"heartbeat": {"every": "1h", "target": "last", "ackMaxChars": 100}},
            "list": [{"id": "main", "default": True}, {"id": "ops", "heartbeat": {"every": "15m", "to": "+1555"}}],
        }
    }
    config = load_config(data=data)
    assert config.agent("main").heartbeat is None
    ops = config.agent("ops").heartbeat
    assert (ops.every_ms, ops.target, ops.to, ops.ack_max_chars) == (15 * 60_000, "last", "+1555", 100)
    assert [a.id for a in config.heartbeat_agents()] == ["ops"]


def test_heartbeat_defaults_apply_to_every_listed_agent():
    """agents.defaults.heartbeat without per-agent blocks → every agent runs it."""
    data = {"agents": {"defaults": {"heartbeat": {"every": "45m"}}, "list": [{"id": "a"}, {"id": "b"}]}}
    config = load_config(data=data)
    assert [a.heartbeat.every_ms for a in config.agents()] == [45 * 60_000, 45 * 60_000]


def test_heartbeat_without_any_block_runs_only_on_the_default_agent():
    """No heartbeat config anywhere → only the default agent, with the built-in defaults."""
    config = load_config(data=MULTI)
    assert [a.id for a in config.heartbeat_agents()] == ["ops"]
    heartbeat = config.agent("ops").heartbeat
    assert heartbeat.every_ms == 30 * 60_000
    assert heartbeat.prompt == DEFAULT_HEARTBEAT_PROMPT
    assert (heartbeat.target, heartbeat.ack_max_chars, heartbeat.timeout_seconds) == ("none", 300, 600)
    assert (heartbeat.isolated_session, heartbeat.skip_when_busy, heartbeat.session) == (False, False, None)


def test_heartbeat_interval_zero_is_not_scheduled():
    """every "0m" disables the heartbeat of that agent."""
    data = {"agents": {"defaults": {"heartbeat": {"every": "0m"}}, "list": [{"id": "a"}, {"id": "b", "heartbeat": {}}]}}
    config = load_config(data=data)
    assert config.agent("a").heartbeat is None
    assert config.agent("b").heartbeat is None
    assert config.heartbeat_agents() == []


def test_heartbeat_fields_and_timeout_default():
    """Prompt, session, activeHours and flags are read; timeout defaults to min(600 s, interval)."""
    block = {
        "every": "5m",
        "prompt": "Check the inbox.",
        "session": "agent:main:ops",
        "isolatedSession": True,
        "skipWhenBusy": True,
        "activeHours": {"start": "08:00", "end": "24:00"},
    }
    heartbeat = load_config(data={"agents": {"defaults": {"heartbeat": block}}}).agent("main").heartbeat
    assert heartbeat.prompt == "Check the inbox."
    assert heartbeat.session == "agent:main:ops"
    assert heartbeat.isolated_session and heartbeat.skip_when_busy
    assert heartbeat.active_hours == {"start": "08:00", "end": "24:00", "timezone": "user"}
    assert heartbeat.timeout_seconds == 300


# --- durations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30m", 30 * 60_000),
        ("1h", 3_600_000),
        ("45s", 45_000),
        ("0m", 0),
        (15, 15 * 60_000),
        ("20", 20 * 60_000),
        ("1h30m", 90 * 60_000),
        ("500ms", 500),
        ("2d", 2 * 86_400_000),
        ("1.5h", 90 * 60_000),
    ],
)
def test_parse_duration_ms_accepts_units_and_bare_minutes(value, expected):
    """Durations take ms/s/m/h/d units; a bare number is minutes."""
    assert parse_duration_ms(value) == expected


@pytest.mark.parametrize("value", ["soon", "-5m", "10 minutes", "", True, [30]])
def test_bad_heartbeat_duration_names_the_key(value):
    """An unparsable interval raises ConfigError naming agents.defaults.heartbeat.every."""
    with pytest.raises(ConfigError) as info:
        load_config(data={"agents": {"defaults": {"heartbeat": {"every": value}}}})
    assert info.value.key == "agents.defaults.heartbeat.every"
    assert "agents.defaults.heartbeat.every" in str(info.value)


# --- subagents -------------------------------------------------------------------------


def test_subagents_merge_defaults_with_the_agent_block():
    """Per-agent subagents keys beat agents.defaults.subagents key by key."""
    data = {
        "agents": {
            "defaults": {"subagents": {"maxSpawnDepth": 2, "maxConcurrent": 3, "allowAgents": ["Research"]}},
            "list": [{"id": "main"}, {"id": "research", "subagents": {"maxSpawnDepth": 3, "allowAgents": ["*"]}}],
        }
    }
    config = load_config(data=data)
    main, research = config.agent("main").subagents, config.agent("research").subagents
    assert (main.max_spawn_depth, main.max_concurrent, main.allow_agents) == (2, 3, ["research"])
    assert (research.max_spawn_depth, research.max_concurrent, research.allow_agents) == (3, 3, ["*"])


def test_subagents_allows_self_listed_and_wildcard():
    """Self is always allowed; others need allowAgents (or '*')."""
    data = {"agents": {"list": [{"id": "main", "subagents": {"allowAgents": ["ops"]}}, {"id": "ops"}, {"id": "x"}]}}
    config = load_config(data=data)
    sub = config.agent("main").subagents
    assert sub.allows(requester_agent_id="main", target_agent_id="MAIN")
    assert sub.allows(requester_agent_id="main", target_agent_id="ops")
    assert not sub.allows(requester_agent_id="main", target_agent_id="x")
    assert not config.agent("ops").subagents.allows(requester_agent_id="ops", target_agent_id="main")


# --- validation ------------------------------------------------------------------------

PROVIDER = {"baseUrl": "http://127.0.0.1:8000/v1"}

INVALID = [
    ({"agents": {"list": {"id": "main"}}}, "agents.list"),
    ({"agents": {"list": [{"name": "no id"}]}}, "agents.list[0].id"),
    ({"agents": {"list": [{"id": 7}]}}, "agents.list[0].id"),
    ({"agents": {"list": [{"id": "main"}, {"id": " MAIN "}]}}, "agents.list[1].id"),
    ({"agents": {"list": [{"id": "main", "default": "yes"}]}}, "agents.list[0].default"),
    ({"agents": {"list": ["main"]}}, "agents.list[0]"),
    ({"agents": {"defaults": {"timeoutSeconds": "ten"}}}, "agents.defaults.timeoutSeconds"),
    ({"agents": {"list": [{"id": "a", "heartbeat": {"every": "often"}}]}}, "agents.list[0].heartbeat.every"),
    ({"agents": {"defaults": {"heartbeat": {"activeHours": {"start": "25:00", "end": "10:00"}}}}},
     "agents.defaults.heartbeat.activeHours.start"),
    ({"agents": {"defaults": {"heartbeat": {"ackMaxChars": -1}}}}, "agents.defaults.heartbeat.ackMaxChars"),
    ({"agents": {"defaults": {"subagents": {"maxSpawnDepth": 0}}}}, "agents.defaults.subagents.maxSpawnDepth"),
    ({"agents": {"list": [{"id": "a", "subagents": {"maxChildrenPerAgent": 21}}]}},
     "agents.list[0].subagents.maxChildrenPerAgent"),
    ({"agents": {"defaults": {"subagents": {"runTimeoutSeconds": -5}}}}, "agents.defaults.subagents.runTimeoutSeconds"),
    ({"agents": {"defaults": {"subagents": {"allowAgents": "ops"}}}}, "agents.defaults.subagents.allowAgents"),
    ({"agents": {"defaults": {"model": "nowhere/model-x"}}}, "agents.defaults.model"),
    ({"agents": {"list": [{"id": "a", "model": {"primary": 3}}]}}, "agents.list[0].model.primary"),
    ({"messages": {"queue": {"mode": "sometimes"}}}, "messages.queue.mode"),
    ({"messages": {"queue": {"drop": "all"}}}, "messages.queue.drop"),
    ({"messages": {"queue": {"cap": -1}}}, "messages.queue.cap"),
    ({"messages": {"queue": {"debounceMs": -100}}}, "messages.queue.debounceMs"),
    ({"messages": {"queue": {"byChannel": {"slack": "loud"}}}}, "messages.queue.byChannel.slack"),
    ({"session": {"scope": "per-room"}}, "session.scope"),
    ({"session": {"agentToAgent": {"maxPingPongTurns": 6}}}, "session.agentToAgent.maxPingPongTurns"),
    ({"session": {"agentToAgent": {"maxPingPongTurns": -1}}}, "session.agentToAgent.maxPingPongTurns"),
    ({"session": {"sendPolicy": {"default": "maybe"}}}, "session.sendPolicy.default"),
    ({"session": {"sendPolicy": {"rules": [{"action": "block"}]}}}, "session.sendPolicy.rules[0].action"),
    ({"session": {"sendPolicy": {"rules": [{"match": {}}]}}}, "session.sendPolicy.rules[0].action"),
    ({"tools": {"sessions": {"visibility": "everyone"}}}, "tools.sessions.visibility"),
    ({"tools": {"agentToAgent": {"enabled": "true"}}}, "tools.agentToAgent.enabled"),
    ({"models": {"providers": {"local": {}}}}, "models.providers.local.baseUrl"),
    ({"models": {"providers": {"local": {**PROVIDER, "api": "anthropic-messages"}}}}, "models.providers.local.api"),
    ({"models": {"providers": {"offline": PROVIDER}}}, "models.providers.offline"),
    ({"models": {"providers": {"local": {**PROVIDER, "models": [{"name": "no id"}]}}}}, "models.providers.local.models[0].id"),
    ({"acp": {"permissionPolicy": "ask"}}, "acp.permissionPolicy"),
    ({"acp": {"agents": {"codex": {"args": []}}}}, "acp.agents.codex.command"),
    ({"acp": {"runtime": {"ttlMinutes": -1}}}, "acp.runtime.ttlMinutes"),
    ({"acp": {"delegate": {"idleHours": -1}}}, "acp.delegate.idleHours"),
    ({"cron": {"maxConcurrentRuns": 0}}, "cron.maxConcurrentRuns"),
    ({"cron": {"sessionRetention": "eventually"}}, "cron.sessionRetention"),
    ({"gateway": {"auth": {"mode": "oauth"}}}, "gateway.auth.mode"),
    ({"gateway": {"auth": {"mode": "token"}}}, "gateway.auth.token"),
    ({"gateway": {"auth": {"mode": "password", "token": "t"}}}, "gateway.auth.password"),
    ({"gateway": "open"}, "gateway"),
]


@pytest.mark.parametrize(("data", "key"), INVALID, ids=[key for _, key in INVALID])
def test_invalid_value_raises_config_error_naming_the_key(data, key):
    """Every invalid value raises ConfigError whose key and message name the dotted key."""
    with pytest.raises(ConfigError) as info:
        load_config(data=data)
    assert info.value.key == key
    assert key in str(info.value)


def test_config_error_is_a_gateway_error_with_a_stable_code():
    """ConfigError carries the INVALID_REQUEST wire code and the INVALID_CONFIG detail code."""
    with pytest.raises(GatewayError) as info:
        load_config(data={"session": {"scope": 3}})
    assert info.value.code == "INVALID_REQUEST"
    assert info.value.details == {"code": "INVALID_CONFIG", "key": "session.scope"}


def test_invalid_json5_file_raises_config_error(tmp_path):
    """A file that is not JSON5 (or not an object) is rejected with the path in the message."""
    path = write(tmp_path, "{agents: [")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, "[1, 2]"))


# --- unknown keys and JSON5 ------------------------------------------------------------


def test_unknown_keys_warn_with_their_key_and_are_ignored(caplog):
    """Unknown keys at any level are logged by dotted key and do not change the config."""
    data = {
        "colour": "blue",
        "agents": {"list": [{"id": "main", "mood": "happy"}]},
        "messages": {"queue": {"speed": 3}},
    }
    with caplog.at_level(logging.WARNING, logger="openclaw_site.config"):
        config = load_config(data=data)
    assert "unknown config key colour ignored" in caplog.text
    assert "agents.list[0].mood" in caplog.text
    assert "messages.queue.speed" in caplog.text
    assert config.agent_ids() == ["main"]
    assert config.raw["colour"] == "blue"


def test_known_openclaw_keys_are_accepted_silently(caplog):
    """OpenClaw keys the gateway does not interpret (workspace, bindings…) do not warn."""
    data = {"bindings": [], "agents": {"defaults": {"workspace": "~/w"}, "list": [{"id": "main", "identity": {}}]}}
    with caplog.at_level(logging.WARNING, logger="openclaw_site.config"):
        load_config(data=data)
    assert caplog.text == ""


def test_json5_comments_and_trailing_commas_parse(tmp_path):
    """The file is JSON5: comments, unquoted keys and trailing commas are fine."""
    path = write(
        tmp_path,
        """
        // the gateway config
        {
          agents: {
            list: [
              { id: "main", default: true, },  /* the hub */
              { id: "ops", },
            ],
          },
          session: { mainKey: "hub", },
        }
        """,
    )
    config = load_config(path)
    assert config.agent_ids() == ["main", "ops"]
    assert config.main_session_key() == "agent:main:hub"
    assert config.path == str(path)


# --- queue, providers, policies --------------------------------------------------------


def test_queue_mode_aliases_and_by_channel():
    """'queue' is the legacy alias of steer; byChannel and debounceMsByChannel apply per channel."""
    data = {
        "messages": {
            "queue": {
                "mode": "queue",
                "debounceMs": "2s",
                "cap": 5,
                "drop": "old",
                "byChannel": {"Slack": "steer+backlog", "webchat": "collect"},
                "debounceMsByChannel": {"webchat": 1500},
            }
        }
    }
    queue = load_config(data=data).queue_defaults
    assert (queue.mode, queue.debounce_ms, queue.cap, queue.drop) == ("steer", 2000, 5, "old")
    assert queue.for_channel("slack").mode == "steer-backlog"
    webchat = queue.for_channel("webchat")
    assert (webchat.mode, webchat.debounce_ms, webchat.cap) == ("collect", 1500, 5)
    assert queue.for_channel(None) == queue


def test_queue_cap_below_one_is_ignored():
    """A cap of 0 falls back to the default 20 (OpenClaw ignores caps below 1)."""
    assert load_config(data={"messages": {"queue": {"cap": 0}}}).queue_defaults.cap == 20


def test_providers_and_resolve_model():
    """Configured providers resolve explicit, declared and single-provider bare references."""
    data = {
        "models": {
            "providers": {
                "ollama": {
                    "baseUrl": "http://127.0.0.1:11434/v1",
                    "models": [{"id": "qwen3:8b", "name": "Qwen 3", "contextWindow": 32768, "maxTokens": 4096}],
                }
            }
        }
    }
    config = load_config(data=data)
    ollama = config.providers["ollama"]
    assert (ollama.api, ollama.api_key) == ("openai-completions", "")
    assert ollama.models[0].context_window == 32768
    assert config.resolve_model(None) == ("offline", "scripted")
    assert config.resolve_model("ollama/qwen3:8b") == ("ollama", "qwen3:8b")
    assert config.resolve_model("qwen3:8b") == ("ollama", "qwen3:8b")
    assert config.resolve_model("llama3") == ("ollama", "llama3")
    assert config.resolve_model("scripted") == ("offline", "scripted")
    with pytest.raises(UnknownModelError):
        config.resolve_model("openai/gpt-5")


def test_provider_api_key_reads_environment_references(monkeypatch):
    """apiKey "${NAME}" is taken from the environment; an unset variable is an error."""
    monkeypatch.setenv("LOCAL_LLM_KEY", "sk-local")
    data = {"models": {"providers": {"local": {**PROVIDER, "apiKey": "${LOCAL_LLM_KEY}"}}}}
    assert load_config(data=data).providers["local"].api_key == "sk-local"
    monkeypatch.delenv("LOCAL_LLM_KEY")
    with pytest.raises(ConfigError) as info:
        load_config(data=data)
    assert info.value.key == "models.providers.local.apiKey"


def test_send_policy_and_tools_are_normalised():
    """sendPolicy rules keep only the known match keys; tools settings are read."""
    data = {
        "session": {
            "sendPolicy": {
                "default": "deny",
                "rules": [{"action": "allow", "match": {"channel": "webchat"}}, {"action": "deny", "match": {}}],
            }
        },
        "tools": {"sessions": {"visibility": "all"}, "agentToAgent": {"enabled": True, "allow": ["ops*"]}},
    }
    config = load_config(data=data)
    assert config.send_policy == {
        "default": "deny",
        "rules": [{"action": "allow", "match": {"channel": "webchat"}}, {"action": "deny", "match": {}}],
    }
    assert config.sessions_visibility == "all"
    assert config.tools_agent_to_agent == {"enabled": True, "allow": ["ops*"]}


def test_acp_delegate_minutes_beat_hours_and_agents_are_read():
    """acp.delegate limits come out in minutes; ACP agents keep command, args and env."""
    data = {
        "acp": {
            "defaultAgent": "Codex",
            "allowedAgents": ["codex"],
            "agents": {"codex": {"command": "codex-acp", "args": ["--quiet"], "env": {"A": "1"}}},
            "runtime": {"ttlMinutes": 30},
            "delegate": {"idleHours": 2, "maxAgeHours": 10, "maxAgeMinutes": 90},
            "permissionPolicy": "deny-all",
        }
    }
    acp = load_config(data=data).acp
    assert acp["defaultAgent"] == "codex"
    assert acp["agents"]["codex"] == {"command": "codex-acp", "args": ["--quiet"], "env": {"A": "1"}, "cwd": None}
    assert acp["runtime"]["ttlMinutes"] == 30
    assert acp["delegate"] == {"idleMinutes": 120, "maxAgeMinutes": 90}
    assert acp["permissionPolicy"] == "deny-all"


def test_cron_session_retention_false_disables_the_reaper():
    """cron.sessionRetention false gives sessionRetentionMs None."""
    cron = load_config(data={"cron": {"enabled": False, "maxConcurrentRuns": 4, "sessionRetention": False}}).cron
    assert (cron["enabled"], cron["maxConcurrentRuns"], cron["sessionRetentionMs"]) == (False, 4, None)


# --- auth and the environment ----------------------------------------------------------


def test_auth_mode_follows_the_configured_secret():
    """No mode: token if a token is set, password if only a password is, else none."""
    assert load_config(data={"gateway": {"auth": {"token": "t1"}}}).auth.mode == "token"
    assert load_config(data={"gateway": {"auth": {"password": "p1"}}}).auth.mode == "password"
    assert load_config(data={"gateway": {"auth": {}}}).auth.mode == "none"


def test_environment_token_overrides_the_file_token(settings):
    """OPENCLAW_GATEWAY_TOKEN beats gateway.auth.token and fills token mode."""
    settings.OPENCLAW_GATEWAY_TOKEN = "from-env"
    config = load_config(data={"gateway": {"auth": {"mode": "token", "token": "from-file"}}})
    assert (config.auth.mode, config.auth.token) == ("token", "from-env")
    assert load_config(data={}).auth.mode == "token"


def test_environment_password_fills_password_mode(settings):
    """OPENCLAW_GATEWAY_PASSWORD satisfies mode password and implies it when alone."""
    settings.OPENCLAW_GATEWAY_PASSWORD = "secret"
    assert load_config(data={"gateway": {"auth": {"mode": "password"}}}).auth.password == "secret"
    assert load_config(data={}).auth.mode == "password"


def test_hash_is_stable_changes_with_config_and_hides_secrets():
    """hash() is deterministic, differs between configs and never contains a secret."""
    data = {"gateway": {"auth": {"token": "super-secret"}}, **MULTI}
    first, second = load_config(data=data), load_config(data=data)
    assert first.hash() == second.hash()
    assert first.hash().startswith("sha256:")
    assert first.hash() != load_config(data=MULTI).hash()
    assert "super-secret" not in str(first.as_dict())


# --- cache and overrides ---------------------------------------------------------------


def test_get_config_reads_settings_path_and_caches(tmp_path, settings):
    """get_config loads settings.OPENCLAW_CONFIG_PATH once until the cache is reset."""
    path = write(tmp_path, '{agents: {list: [{id: "alpha"}]}}')
    settings.OPENCLAW_CONFIG_PATH = str(path)
    config = get_config()
    assert config.agent_ids() == ["alpha"]
    assert config.path == str(path)
    path.write_text('{agents: {list: [{id: "beta"}]}}')
    assert get_config() is config
    reset_config_cache()
    assert get_config().agent_ids() == ["beta"]


def test_get_config_reloads_when_the_settings_change(tmp_path, settings):
    """A different config path or gateway token in the settings is picked up without a reset."""
    settings.OPENCLAW_CONFIG_PATH = str(write(tmp_path, "{}"))
    assert get_config().agent_ids() == ["main"]
    other = tmp_path / "other.json"
    other.write_text('{agents: {list: [{id: "gamma"}]}}')
    settings.OPENCLAW_CONFIG_PATH = str(other)
    assert get_config().agent_ids() == ["gamma"]
    settings.OPENCLAW_GATEWAY_TOKEN = "new-token"
    assert get_config().auth.token == "new-token"


def test_override_config_as_context_manager_restores(tmp_path, settings):
    """Inside the block get_config returns the override; afterwards the file config again."""
    settings.OPENCLAW_CONFIG_PATH = str(tmp_path / "missing.json")
    with override_config(MULTI) as config:
        assert get_config() is config
        assert get_config().default_agent_id() == "ops"
        with override_config({"agents": {"list": [{"id": "inner"}]}}):
            assert get_config().agent_ids() == ["inner"]
        assert get_config().default_agent_id() == "ops"
    assert get_config().agent_ids() == ["main"]


@override_config({"agents": {"list": [{"id": "decorated"}]}})
def test_override_config_as_sync_decorator():
    """Decorating a test function applies the override for its duration."""
    assert get_config().agent_ids() == ["decorated"]


@override_config({"agents": {"list": [{"id": "async-agent"}]}})
async def test_override_config_as_async_decorator():
    """The decorator keeps coroutine functions coroutines and covers their awaits."""
    await asyncio.sleep(0)
    assert get_config().agent_ids() == ["async-agent"]


def test_override_config_decorator_restores_after_the_call(tmp_path, settings):
    """After a decorated function returns the previous config is back."""
    settings.OPENCLAW_CONFIG_PATH = str(tmp_path / "missing.json")

    @override_config(MULTI)
    def inside():
        return get_config().default_agent_id()

    assert inside() == "ops"
    assert get_config().default_agent_id() == "main"


def test_the_documented_full_example_loads(monkeypatch, caplog):
    """The full example of docs/configuration.md is a valid config without warnings."""
    from pathlib import Path

    monkeypatch.setenv("OLLAMA_API_KEY", "ollama")
    monkeypatch.setenv("OPENCLAW_GATEWAY_TOKEN", "tok")
    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    example = doc.split("## Full example", 1)[1].split("```json5", 1)[1].split("```", 1)[0]
    with caplog.at_level(logging.WARNING, logger="openclaw_site.config"):
        config = load_config(data=json5.loads(example))
    assert caplog.text == ""
    assert config.default_agent_id() == "main"
    assert [a.id for a in config.heartbeat_agents()] == ["ops"]
    assert config.agent("main").model == "ollama/qwen3:8b"
    assert config.auth == AuthConfig(mode="token", token="tok", password="")

"""hypothesis properties of session keys and config parsing (the ones
``sessions_app/tests/test_keys.py`` does not already state).

Keys: every public key function takes any text without raising; parsing, building and
canonicalising agree with each other. Config: ``load_config(data=...)`` on any JSON value
(random trees, and trees built from the config's own key names so that the deep
validators run) either returns a config or raises :class:`ConfigError` naming a key.
"""

from __future__ import annotations

import json
import typing

import json5
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openclaw_site import config as config_module
from openclaw_site.config import ConfigError, GatewayConfig, load_config, parse_duration_ms
from sessions_app import keys

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- session keys ---------------------------------------------------------------------

SEGMENT = st.text(alphabet="aAgGeEnNtT:mainopsUnkwLOB_- \t!ü0", max_size=12)
KEY = st.one_of(
    st.none(),
    st.text(max_size=80),
    st.lists(SEGMENT, max_size=6).map(":".join),
    st.builds(lambda a, r: f"agent:{a}:{r}", SEGMENT, st.lists(SEGMENT, min_size=1, max_size=4).map(":".join)),
    st.builds(lambda b, t: f"{b}:thread:{t}", SEGMENT, SEGMENT),
)
KINDS = set(typing.get_args(keys.SessionKind))
SHAPES = set(typing.get_args(keys.KeyShape))


class Cfg:
    """The config members key resolution reads."""

    def __init__(self, agents: list[str], main_key: str, scope: str) -> None:
        self.agents, self.main_key, self.scope = agents, main_key, scope

    def default_agent_id(self) -> str:
        return self.agents[0]

    def agent_ids(self) -> list[str]:
        return list(self.agents)


CFG = st.builds(
    Cfg,
    st.lists(st.sampled_from(["main", "ops", "primary", "w-1"]), min_size=1, max_size=3, unique=True),
    st.sampled_from(["main", "work", "Home "]),
    st.sampled_from(["per-sender", "global"]),
)

ONE_KEY_FUNCTIONS = [
    keys.normalize_agent_id, keys.is_valid_agent_id, keys.normalize_account_id, keys.normalize_main_key,
    keys.normalize_session_key, keys.parse_agent_session_key, keys.classify_session_key_shape,
    keys.resolve_agent_id_from_session_key, keys.to_agent_request_session_key, keys.is_cron_session_key,
    keys.is_cron_run_session_key, keys.is_subagent_session_key, keys.get_subagent_depth, keys.is_acp_session_key,
    keys.is_dashboard_session_key, keys.is_hook_session_key, keys.parse_thread_session_suffix,
    keys.resolve_thread_parent_session_key, keys.is_thread_session_key, keys.parse_group_key,
    keys.classify_session_kind,
]  # fmt: skip


@FAST
@given(key=KEY)
def test_every_single_key_function_takes_any_text(key):
    for function in ONE_KEY_FUNCTIONS:
        function(key)


@FAST
@given(key=KEY, cfg=CFG)
def test_every_config_dependent_key_function_takes_any_text(key, cfg):
    keys.resolve_wake_agent_id(key, cfg=cfg)
    keys.resolve_session_store_key(cfg=cfg, session_key=key)
    keys.canonicalize_main_session_alias(cfg=cfg, agent_id=key, session_key=key)
    keys.resolve_cron_session_key(cfg=cfg, agent_id=keys.normalize_agent_id(key), requested_session_key=key)
    keys.resolve_cron_target(cfg=cfg, agent_id=key, session_key=key)
    keys.to_agent_store_session_key(agent_id=key, request_key=key, main_key=key)


@FAST
@given(key=KEY)
def test_parsed_key_rebuilds_to_itself(key):
    """A parsed key has a non-empty agent and rest, and ``agent:<a>:<rest>`` parses back to them."""
    parsed = keys.parse_agent_session_key(key)
    if parsed is None or parsed.rest != parsed.rest.strip():
        return  # a rest with surrounding blanks is trimmed away when re-parsed
    assert parsed.agent_id and parsed.rest
    assert "" not in parsed.rest.split(":")
    assert keys.parse_agent_session_key(f"agent:{parsed.agent_id}:{parsed.rest}") == parsed


@FAST
@given(key=KEY)
def test_shape_agrees_with_parsing(key):
    shape = keys.classify_session_key_shape(key)
    assert shape in SHAPES
    assert (shape == "agent") == (keys.parse_agent_session_key(key) is not None)
    assert (shape == "missing") == (keys.normalize_session_key(key) == "")


@FAST
@given(key=KEY, main_key=st.sampled_from(["main", "work"]))
def test_kind_is_a_known_family_and_ignores_case_and_padding(key, main_key):
    kind = keys.classify_session_kind(key, main_key=main_key)
    assert kind in KINDS
    padded = f"  {(key or '').upper()} "
    if padded.strip().lower() == keys.normalize_session_key(key):  # ASCII-only case changes
        assert keys.classify_session_kind(padded, main_key=main_key) == kind


@FAST
@given(agent=KEY, main_key=KEY)
def test_main_key_always_parses_back_to_its_agent(agent, main_key):
    built = keys.build_agent_main_session_key(agent, main_key)
    parsed = keys.parse_agent_session_key(built)
    if ":" in keys.normalize_main_key(main_key):
        return  # a main key with colons is kept verbatim (spec-a: trim + lower only)
    assert parsed is not None
    assert parsed.agent_id == keys.normalize_agent_id(agent)
    assert keys.classify_session_kind(built, main_key=keys.normalize_main_key(main_key)) == "main" or not parsed.rest


@FAST
@given(key=KEY, cfg=CFG)
def test_store_key_of_a_relative_key_belongs_to_the_default_agent(key, cfg):
    """A relative key is prefixed with the default agent; one made of colons only (``":"``)
    gives an ``agent:<a>::`` key, which is malformed, never another agent's key."""
    lowered = keys.normalize_session_key(key)
    store = keys.resolve_session_store_key(cfg=cfg, session_key=key)
    if not lowered or lowered in ("global", "unknown") or lowered.startswith("agent:") or store == "global":
        return
    assert store.startswith(f"agent:{keys.normalize_agent_id(cfg.default_agent_id())}:")
    if keys.parse_agent_session_key(store) is None:
        assert keys.classify_session_key_shape(store) == "malformed_agent"
    else:
        assert keys.resolve_agent_id_from_session_key(store) == keys.normalize_agent_id(cfg.default_agent_id())


@FAST
@given(base=SEGMENT.filter(lambda b: b.strip() and ":thread:" not in b.lower()),
       thread=SEGMENT.filter(lambda t: t.strip() and ":thread:" not in t.lower() and "thread:" not in t.lower()))  # fmt: skip
def test_thread_suffix_round_trips(base, thread):
    """``resolve_thread_session_keys`` and ``parse_thread_session_suffix`` are inverses."""
    built = keys.resolve_thread_session_keys(base, thread)
    assert built.parent_session_key == base
    parsed_base, parsed_thread = keys.parse_thread_session_suffix(built.session_key)
    if built.session_key.strip() != built.session_key:
        return  # surrounding whitespace of base/thread is trimmed by the parser
    assert (parsed_base, parsed_thread) == (base, keys._lower(thread.strip()))
    assert keys.is_thread_session_key(built.session_key)


@FAST
@given(key=KEY)
def test_subagent_depth_counts_nested_spawns(key):
    depth = keys.get_subagent_depth(key)
    assert depth >= 0
    assert keys.get_subagent_depth(f"{keys.normalize_session_key(key)}:subagent:x") == depth + 1


# --- config parsing -------------------------------------------------------------------

KNOWN_NAMES = sorted(
    {name for attr, value in vars(config_module).items() if attr.endswith("_KEYS") for name in value}
    | {"list", "defaults", "providers", "rules", "match", "action", "every", "activeHours", "start", "end",
       "visibility", "a2a", "delegates", "allowAgents", "maxSpawnDepth", "maxChildrenPerAgent", "archiveAfterMinutes"}
)  # fmt: skip
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
    st.sampled_from(["30m", "1h30m", "0", "-5m", "9" * 400 + "m", "1e400", "${NO_SUCH_VAR}", "offline/scripted",
                     "openai/gpt", "token", "password", "none", "global", "steer", "08:00", "24:00", "25:99", "ops"]),
)  # fmt: skip
NAMES = st.one_of(st.sampled_from(KNOWN_NAMES), st.text(max_size=8))
CONFIG_TREE = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(NAMES, children, max_size=5),
        st.lists(st.dictionaries(NAMES, children, max_size=5), max_size=3),
    ),
    max_leaves=30,
)
JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
    lambda children: st.one_of(st.lists(children), st.dictionaries(st.text(), children)),
    max_leaves=20,
)


def _load(data):
    try:
        loaded = load_config(data=data)
    except ConfigError as error:
        assert error.key and error.code == "INVALID_REQUEST" and error.details["code"] == "INVALID_CONFIG"
        return None
    assert isinstance(loaded, GatewayConfig)
    loaded.default_agent_id(), loaded.main_session_key(), loaded.hash()
    return loaded


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=JSON_VALUE)
def test_config_from_any_json_value_loads_or_raises_config_error(data):
    _load(data)


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.dictionaries(st.sampled_from(KNOWN_NAMES), CONFIG_TREE, max_size=6))
def test_config_built_from_its_own_key_names_loads_or_raises_config_error(data):
    _load(data)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(agents=st.lists(st.dictionaries(st.sampled_from(KNOWN_NAMES), CONFIG_TREE, max_size=6), max_size=4),
       defaults=st.dictionaries(st.sampled_from(KNOWN_NAMES), CONFIG_TREE, max_size=6))  # fmt: skip
def test_agent_sections_load_or_raise_config_error(agents, defaults):
    _load({"agents": {"list": agents, "defaults": defaults}})


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(st.sampled_from(KNOWN_NAMES), CONFIG_TREE, max_size=6))
def test_config_survives_a_json5_round_trip(data):
    """What loads from ``data`` loads the same from its JSON5 text (the file path)."""
    try:
        text = json.dumps(data, allow_nan=False)
    except ValueError:
        return
    first = _load(data)
    second = _load(json5.loads(text))
    assert (first is None) == (second is None)
    if first is not None:
        assert first.hash() == second.hash()


@pytest.mark.parametrize("value", ["9" * 400 + "m", "1e400", float("inf"), float("nan"), -1, "-5m", [], {}])
def test_duration_rejects_what_it_cannot_represent(value):
    with pytest.raises(ConfigError):
        parse_duration_ms(value, key="x")

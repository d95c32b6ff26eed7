"""Session key rules of spec-a §1.3 and the cron/wake target rules of §3.3."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessions_app import keys
from sessions_app.keys import CronTarget, GroupKey, ParsedKey, ThreadSessionKeys


@dataclass
class FakeCfg:
    """The config members key resolution reads (a true boundary: the loader is elsewhere)."""

    agents: tuple[str, ...] = ("main",)
    default: str | None = None
    main_key: str = "main"
    scope: str = "per-sender"

    def default_agent_id(self) -> str:
        return self.default or self.agents[0]

    def agent_ids(self) -> list[str]:
        return list(self.agents)


SINGLE = FakeCfg()
# "main" exists but is not the default: the deployment shape of PR #78687.
MULTI = FakeCfg(agents=("primary", "ops", "main"), default="primary")
WORK = FakeCfg(agents=("main", "ops"), main_key="work")
GLOBAL = FakeCfg(agents=("main", "ops"), scope="global")
CONFIGS = (SINGLE, MULTI, WORK, GLOBAL)


# --- ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "main"),
        ("", "main"),
        ("   ", "main"),
        ("ops", "ops"),
        (" Ops ", "ops"),
        ("OPS_1-x", "ops_1-x"),
        ("9lives", "9lives"),
        ("my agent", "my-agent"),
        ("a!!  !b", "a-b"),
        ("--ops--", "ops"),
        ("-ops", "ops"),
        ("ops-", "ops-"),  # valid as is, so the trailing dash stays
        ("ops!", "ops"),
        ("!!!", "main"),
        ("Ünïcode", "n-code"),
        ("a" * 64, "a" * 64),
        ("a" * 65, "a" * 64),
        ("A" * 70, "a" * 64),
        ("a" * 63 + "!b", "a" * 63 + "-"),  # cut happens after the dash strip
        ("_ops!", "_ops"),  # upstream strips only dashes; see the property test
    ],
)
def test_normalize_agent_id_sanitises(value, expected):
    assert keys.normalize_agent_id(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ops", True),
        ("Ops", True),
        (" ops ", True),
        ("9lives", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("", False),
        (None, False),
        ("-ops", False),
        ("_ops", False),
        ("my agent", False),
    ],
)
def test_is_valid_agent_id_matches_regex(value, expected):
    assert keys.is_valid_agent_id(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "default"), ("", "default"), ("!!", "default"), ("Biz", "biz"), ("Work Acct", "work-acct")],
)
def test_normalize_account_id_falls_back_to_default(value, expected):
    assert keys.normalize_account_id(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, "main"), ("", "main"), ("  ", "main"), (" Work ", "work"), ("My Key!", "my key!")],
)
def test_normalize_main_key_lowercases_without_sanitising(value, expected):
    assert keys.normalize_main_key(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, ""), ("  GLOBAL ", "global"), ("Unknown", "unknown"), ("Agent:Ops:Main", "agent:ops:main")],
)
def test_normalize_session_key_trims_and_lowercases(value, expected):
    assert keys.normalize_session_key(value) == expected


def test_constants_match_spec():
    """The three defaults and the agent id grammar are the spec's."""
    assert (keys.DEFAULT_AGENT_ID, keys.DEFAULT_MAIN_KEY, keys.DEFAULT_ACCOUNT_ID) == (
        "main",
        "main",
        "default",
    )
    assert keys.AGENT_ID_RE.fullmatch("a" + "b" * 63)
    assert not keys.AGENT_ID_RE.fullmatch("a" + "b" * 64)


# --- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("agent:ops:main", ParsedKey("ops", "main")),
        ("AGENT:Ops:Main", ParsedKey("ops", "main")),
        ("  agent:ops:main  ", ParsedKey("ops", "main")),
        ("agent::ops:main", ParsedKey("ops", "main")),
        ("agent:ops::telegram::direct:42", ParsedKey("ops", "telegram:direct:42")),
        ("agent:ops:cron:job1:run:r1", ParsedKey("ops", "cron:job1:run:r1")),
        ("agent:my agent:main", ParsedKey("my agent", "main")),  # not normalised
        ("agent: ops :main", ParsedKey("ops", "main")),
        (None, None),
        ("", None),
        ("   ", None),
        ("agent:ops", None),
        ("agent:ops:", None),
        ("agent::main", None),
        ("agent: :main", None),
        ("main", None),
        ("cron:job1", None),
        ("global", None),
        ("agents:ops:main", None),
        ("x:agent:ops:main", None),
    ],
)
def test_parse_agent_session_key_splits_agent_and_rest(key, expected):
    assert keys.parse_agent_session_key(key) == expected


@pytest.mark.parametrize(
    ("agent_id", "main_key", "expected"),
    [
        ("Ops", "Work", "agent:ops:work"),
        (None, None, "agent:main:main"),
        ("my agent", "", "agent:my-agent:main"),
        ("ops", " MAIN ", "agent:ops:main"),
    ],
)
def test_build_agent_main_session_key_normalises_parts(agent_id, main_key, expected):
    assert keys.build_agent_main_session_key(agent_id, main_key) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (None, "missing"),
        ("  ", "missing"),
        ("agent:ops:main", "agent"),
        ("AGENT:ops:x", "agent"),
        ("agent:ops", "malformed_agent"),
        ("Agent:", "malformed_agent"),
        ("agent::", "malformed_agent"),
        ("agent:ops:", "malformed_agent"),
        ("main", "legacy_or_alias"),
        ("global", "legacy_or_alias"),
        ("agent", "legacy_or_alias"),
        ("agentx:ops:main", "legacy_or_alias"),
        ("cron:job1", "legacy_or_alias"),
    ],
)
def test_classify_session_key_shape_detects_malformed(key, expected):
    assert keys.classify_session_key_shape(key) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("agent:Ops:main", "ops"),
        ("agent:my agent:x", "my-agent"),
        ("global", "main"),
        ("cron:job1", "main"),
        ("agent:ops", "main"),
        (None, "main"),
    ],
)
def test_resolve_agent_id_from_session_key_falls_back_to_main(key, expected):
    assert keys.resolve_agent_id_from_session_key(key) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("agent:ops:main", "ops"),
        ("agent:Ghost:x", "ghost"),
        ("cron:job1", "primary"),
        ("global", "primary"),
        (None, "primary"),
    ],
)
def test_resolve_wake_agent_id_falls_back_to_default_agent(key, expected):
    assert keys.resolve_wake_agent_id(key, cfg=MULTI) == expected


# --- request and store keys -----------------------------------------------------------


@pytest.mark.parametrize(
    ("store_key", "expected"),
    [
        ("agent:ops:telegram:direct:42", "telegram:direct:42"),
        ("AGENT:OPS:Main", "main"),
        (" main ", "main"),
        ("Cron:Job", "Cron:Job"),
        ("agent:ops", "agent:ops"),
        ("global", "global"),
        ("", None),
        (None, None),
    ],
)
def test_to_agent_request_session_key_strips_agent_prefix(store_key, expected):
    assert keys.to_agent_request_session_key(store_key) == expected


@pytest.mark.parametrize(
    ("agent_id", "request_key", "main_key", "expected"),
    [
        ("ops", "", None, "agent:ops:main"),
        ("ops", None, "work", "agent:ops:work"),
        ("ops", " MAIN ", "work", "agent:ops:work"),
        ("ops", "Telegram:Direct:42", None, "agent:ops:telegram:direct:42"),
        ("ops", "agent:Other:X", None, "agent:other:x"),
        ("ops", "agent::other::x", None, "agent:other:x"),
        ("ops", "Agent:Broken", None, "agent:broken"),
        ("My Agent", "cron:job1", None, "agent:my-agent:cron:job1"),
        ("ops", "global", None, "agent:ops:global"),
    ],
)
def test_to_agent_store_session_key_prefixes_agent(agent_id, request_key, main_key, expected):
    result = keys.to_agent_store_session_key(
        agent_id=agent_id, request_key=request_key, main_key=main_key
    )
    assert result == expected


@pytest.mark.parametrize(
    ("cfg", "agent_id", "session_key", "expected"),
    [
        (SINGLE, "main", "main", "agent:main:main"),
        (SINGLE, "ops", "main", "agent:ops:main"),
        (SINGLE, "Ops", "agent:ops:main", "agent:ops:main"),
        (WORK, "ops", "main", "agent:ops:work"),
        (WORK, "ops", "work", "agent:ops:work"),
        (WORK, "ops", "agent:ops:main", "agent:ops:work"),
        (WORK, "ops", "agent:ops:work", "agent:ops:work"),
        (WORK, "ops", "agent:main:main", "agent:main:main"),
        (GLOBAL, "ops", "main", "global"),
        (GLOBAL, "ops", "agent:ops:main", "global"),
        (GLOBAL, "ops", "agent:ops:cron:j", "agent:ops:cron:j"),
        (SINGLE, "main", "  cron:job1 ", "cron:job1"),
        (SINGLE, "main", "", ""),
        (SINGLE, "main", "MAIN", "MAIN"),  # alias comparison is exact, callers lowercase
    ],
)
def test_canonicalize_main_session_alias_maps_aliases(cfg, agent_id, session_key, expected):
    result = keys.canonicalize_main_session_alias(cfg=cfg, agent_id=agent_id, session_key=session_key)
    assert result == expected


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [(SINGLE, "agent:main:main"), (MULTI, "agent:primary:main"), (WORK, "agent:main:work"), (GLOBAL, "global")],
)
def test_resolve_main_session_key_uses_default_agent_or_global(cfg, expected):
    assert keys.resolve_main_session_key(cfg) == expected


@pytest.mark.parametrize(
    ("cfg", "agent_id", "expected"),
    [(WORK, "ops", "agent:ops:work"), (GLOBAL, "ops", "agent:ops:main"), (SINGLE, None, "agent:main:main")],
)
def test_resolve_agent_main_session_key_ignores_scope(cfg, agent_id, expected):
    assert keys.resolve_agent_main_session_key(cfg=cfg, agent_id=agent_id) == expected


@pytest.mark.parametrize(
    ("cfg", "session_key", "expected"),
    [
        (SINGLE, None, ""),
        (SINGLE, "  ", ""),
        (SINGLE, " GLOBAL ", "global"),
        (SINGLE, "Unknown", "unknown"),
        (SINGLE, "main", "agent:main:main"),
        (MULTI, "main", "agent:primary:main"),
        (MULTI, "MAIN", "agent:primary:main"),
        (WORK, "work", "agent:main:work"),
        (WORK, "main", "agent:main:work"),
        (WORK, "agent:ops:main", "agent:ops:work"),
        (WORK, "agent:OPS:MAIN", "agent:ops:work"),
        (GLOBAL, "main", "global"),
        (GLOBAL, "agent:ops:main", "global"),
        (GLOBAL, "cron:job1", "agent:main:cron:job1"),
        (MULTI, "Telegram:Direct:42", "agent:primary:telegram:direct:42"),
        (MULTI, "subagent:abc", "agent:primary:subagent:abc"),
        (MULTI, "agent:Ops:Telegram:Group:7", "agent:ops:telegram:group:7"),
        (SINGLE, "agent:ops:main", "agent:ops:main"),
        (SINGLE, "agent:ops", "agent:ops"),  # malformed: lowercased, never re-prefixed
        # Agent keys are only lowercased, so an empty segment survives (upstream).
        (SINGLE, "agent::ops:main", "agent::ops:main"),
    ],
)
def test_resolve_session_store_key_canonicalises(cfg, session_key, expected):
    assert keys.resolve_session_store_key(cfg=cfg, session_key=session_key) == expected


# --- cron and wake targets ------------------------------------------------------------


@pytest.mark.parametrize(
    ("cfg", "requested", "expected"),
    [
        (MULTI, None, "primary"),
        (MULTI, "  ", "primary"),
        (MULTI, "ops", "ops"),
        (MULTI, " OPS ", "ops"),
        (MULTI, "main", "main"),
        (MULTI, "ghost", "primary"),
        (SINGLE, "ops", "main"),
    ],
)
def test_resolve_cron_agent_requires_configured_agent(cfg, requested, expected):
    assert keys.resolve_cron_agent(cfg=cfg, requested=requested) == expected


@pytest.mark.parametrize(
    ("cfg", "agent_id", "requested", "expected"),
    [
        (MULTI, "ops", None, "agent:ops:main"),
        (MULTI, "ops", "  ", "agent:ops:main"),
        (MULTI, "ops", "main", "agent:ops:main"),
        (MULTI, "ops", "cron:nightly", "agent:ops:cron:nightly"),
        (MULTI, "ops", "agent:ops:cron:nightly:run:abc-123", "agent:ops:cron:nightly:run:abc-123"),
        (MULTI, "ops", "agent:primary:telegram:direct:1", "agent:ops:main"),
        (MULTI, "primary", "agent:ops:cron:x", "agent:primary:main"),
        (MULTI, "ops", "agent:broken", "agent:ops:main"),
        (WORK, "ops", "agent:ops:main", "agent:ops:work"),
        (GLOBAL, "ops", "main", "global"),
        (GLOBAL, "ops", None, "agent:ops:main"),
    ],
)
def test_resolve_cron_session_key_falls_back_to_own_main(cfg, agent_id, requested, expected):
    result = keys.resolve_cron_session_key(cfg=cfg, agent_id=agent_id, requested_session_key=requested)
    assert result == expected


@pytest.mark.parametrize(
    ("cfg", "agent_id", "session_key", "expected"),
    [
        (MULTI, None, None, CronTarget("primary", None)),
        (MULTI, "  ", "  ", CronTarget("primary", None)),
        (GLOBAL, None, None, CronTarget("main", None)),
        (MULTI, "ops", None, CronTarget("ops", "agent:ops:main")),
        (
            MULTI,
            None,
            "agent:ops:cron:nightly:run:abc-123",
            CronTarget("ops", "agent:ops:cron:nightly:run:abc-123"),
        ),
        (MULTI, None, "cron:nightly", CronTarget("primary", "agent:primary:cron:nightly")),
        (MULTI, None, "main", CronTarget("primary", "agent:primary:main")),
        (MULTI, None, "agent:ghost:main", CronTarget("primary", "agent:primary:main")),
        (MULTI, "ghost", None, CronTarget("primary", "agent:primary:main")),
        (MULTI, "primary", "agent:ops:x", CronTarget("primary", "agent:primary:main")),
        (MULTI, "OPS", "agent:ops:x", CronTarget("ops", "agent:ops:x")),
        (WORK, None, "main", CronTarget("main", "agent:main:work")),
        (GLOBAL, "ops", None, CronTarget("ops", "global")),
        (GLOBAL, None, "agent:ops:main", CronTarget("ops", "global")),
        (GLOBAL, None, "agent:ops:hook:h1", CronTarget("ops", "agent:ops:hook:h1")),
    ],
)
def test_resolve_cron_target_derives_agent_symmetrically(cfg, agent_id, session_key, expected):
    assert keys.resolve_cron_target(cfg=cfg, agent_id=agent_id, session_key=session_key) == expected


# --- predicates -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predicate", "key", "expected"),
    [
        (keys.is_cron_session_key, "agent:ops:cron:job1", True),
        (keys.is_cron_session_key, "AGENT:ops:CRON:job1", True),
        (keys.is_cron_session_key, " agent:ops:cron:j:run:r ", True),
        (keys.is_cron_session_key, "cron:job1", False),
        (keys.is_cron_session_key, "agent:ops:cronjob", False),
        (keys.is_cron_session_key, None, False),
        (keys.is_cron_run_session_key, "agent:ops:cron:j:run:r", True),
        (keys.is_cron_run_session_key, "agent:ops:cron::j:run:r", True),
        (keys.is_cron_run_session_key, "agent:ops:cron:j", False),
        (keys.is_cron_run_session_key, "agent:ops:cron:j:run:", False),
        (keys.is_cron_run_session_key, "agent:ops:cron:j:run:r:thread:1", False),
        (keys.is_cron_run_session_key, "cron:j:run:r", False),
        (keys.is_cron_run_session_key, "", False),
        (keys.is_subagent_session_key, "subagent:abc", True),
        (keys.is_subagent_session_key, "agent:ops:subagent:abc", True),
        (keys.is_subagent_session_key, "Agent:Ops:SubAgent:abc", True),
        (keys.is_subagent_session_key, "agent:ops:main", False),
        (keys.is_subagent_session_key, "agent:ops:telegram:subagent:x", False),
        (keys.is_subagent_session_key, None, False),
        (keys.is_acp_session_key, "acp:u1", True),
        (keys.is_acp_session_key, "ACP:u1", True),
        (keys.is_acp_session_key, "agent:codex:acp:u1", True),
        (keys.is_acp_session_key, "agent:a:main", False),
        (keys.is_acp_session_key, "", False),
        (keys.is_dashboard_session_key, "agent:a:dashboard:u", True),
        (keys.is_dashboard_session_key, "dashboard:u", True),
        (keys.is_dashboard_session_key, "agent:a:main", False),
        (keys.is_hook_session_key, "hook:u", True),
        (keys.is_hook_session_key, "agent:a:hook:u", True),
        (keys.is_hook_session_key, "agent:a:webhook:u", False),
        (keys.is_hook_session_key, None, False),
    ],
)
def test_session_key_predicates_match_families(predicate, key, expected):
    assert predicate(key) is expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("agent:a:subagent:x", 1),
        ("agent:a:subagent:x:subagent:y", 2),
        ("agent:a:SUBAGENT:x", 1),
        ("subagent:x", 0),
        ("agent:a:main", 0),
        (None, 0),
    ],
)
def test_get_subagent_depth_counts_markers(key, expected):
    assert keys.get_subagent_depth(key) == expected


# --- threads --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "thread_id", "expected"),
    [
        (
            "agent:a:slack:channel:c1",
            "T123",
            ThreadSessionKeys("agent:a:slack:channel:c1:thread:t123", "agent:a:slack:channel:c1"),
        ),
        ("base", " X ", ThreadSessionKeys("base:thread:x", "base")),
        ("base", "", ThreadSessionKeys("base", None)),
        ("base", "  ", ThreadSessionKeys("base", None)),
        ("base", None, ThreadSessionKeys("base", None)),
    ],
)
def test_resolve_thread_session_keys_appends_lowercase_suffix(base, thread_id, expected):
    assert keys.resolve_thread_session_keys(base, thread_id) == expected


def test_resolve_thread_session_keys_suffix_can_be_disabled():
    """With use_suffix=False the base key is the session key."""
    result = keys.resolve_thread_session_keys("base", "t1", use_suffix=False)
    assert result == ThreadSessionKeys("base", None)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("agent:a:slack:channel:c1:thread:t1", ("agent:a:slack:channel:c1", "t1")),
        ("a:thread:1:thread:2", ("a:thread:1", "2")),
        ("A:THREAD:Xy", ("A", "Xy")),
        (" a:thread:1 ", ("a", "1")),
        ("agent:a:main", ("agent:a:main", None)),
        (":thread:x", (":thread:x", None)),
        ("a:thread:", ("a:thread:", None)),
        (None, ("", None)),
    ],
)
def test_parse_thread_session_suffix_splits_at_last_marker(key, expected):
    assert keys.parse_thread_session_suffix(key) == expected


@pytest.mark.parametrize(
    ("key", "parent", "is_thread"),
    [
        ("a:thread:1:thread:2", "a:thread:1", True),
        ("x:thread:1", "x", True),
        ("agent:a:main", None, False),
        ("", None, False),
    ],
)
def test_resolve_thread_parent_session_key_returns_base(key, parent, is_thread):
    assert keys.resolve_thread_parent_session_key(key) == parent
    assert keys.is_thread_session_key(key) is is_thread


# --- groups and kinds -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("agent:a:telegram:group:-100", GroupKey("telegram", "group", "-100")),
        ("discord:channel:123:456", GroupKey("discord", "channel", "123:456")),
        ("Telegram:GROUP:X", GroupKey("telegram", "group", "x")),
        ("agent:a:slack:channel:c1:thread:t1", GroupKey("slack", "channel", "c1:thread:t1")),
        ("agent:a:telegram:direct:1", None),
        ("group:abc", None),
        (None, None),
    ],
)
def test_parse_group_key_reads_channel_kind_id(key, expected):
    assert keys.parse_group_key(key) == expected


@pytest.mark.parametrize(
    ("key", "main_key", "expected"),
    [
        ("global", "main", "global"),
        (" UNKNOWN ", "main", "unknown"),
        ("agent:a:main", "main", "main"),
        ("agent:a:work", "work", "main"),
        ("agent:a:main", "work", "other"),
        ("agent:a:cron:j", "main", "cron"),
        ("agent:a:cron:j:run:r", "main", "cron"),
        ("agent:a:subagent:u", "main", "subagent"),
        ("agent:a:subagent:u:subagent:v", "main", "subagent"),
        ("agent:codex:acp:u", "main", "acp"),
        ("agent:a:dashboard:u", "main", "dashboard"),
        ("agent:a:hook:u", "main", "hook"),
        ("hook:u", "main", "hook"),
        ("agent:a:telegram:group:1", "main", "group"),
        ("agent:a:slack:channel:c:thread:t", "main", "group"),
        ("agent:a:direct:bob", "main", "direct"),
        ("agent:a:telegram:direct:42", "main", "direct"),
        ("agent:a:telegram:acct:direct:42", "main", "direct"),
        ("agent:a:telegram:dm:42", "main", "direct"),
        ("agent:a:direct", "main", "other"),
        ("agent:a:main:heartbeat", "main", "other"),
        ("agent:a:whatever", "main", "other"),
        ("", "main", "other"),
    ],
)
def test_classify_session_kind_names_family(key, main_key, expected):
    assert keys.classify_session_kind(key, main_key=main_key) == expected


# --- properties -----------------------------------------------------------------------

KEYISH = st.one_of(
    st.text(),
    st.text(alphabet="agentmAINopsGLOBALunkw:_- !\t", max_size=40),
    st.builds(
        lambda agent, rest: f"agent:{agent}:{rest}",
        st.text(alphabet="OpsMain_- :!", max_size=10),
        st.text(alphabet="mainWORKcron:run:thread:x ", max_size=20),
    ),
)
SANITISED_ID_RE = re.compile(r"[a-z0-9_][a-z0-9_-]{0,63}")


@settings(max_examples=300)
@given(value=KEYISH)
def test_normalize_agent_id_is_idempotent(value):
    """Normalising twice equals normalising once, for any text."""
    once = keys.normalize_agent_id(value)
    assert keys.normalize_agent_id(once) == once


@settings(max_examples=300)
@given(value=KEYISH)
def test_normalize_agent_id_returns_path_safe_id(value):
    """The result is 1-64 chars of [a-z0-9_-], never dash-led; valid unless ``_``-led.

    Upstream strips only leading dashes, so ``"_x!"`` normalises to ``"_x"``, which
    AGENT_ID_RE (first char ``[a-z0-9]``) rejects; every other result is a valid id.
    """
    result = keys.normalize_agent_id(value)
    assert SANITISED_ID_RE.fullmatch(result)
    assert keys.is_valid_agent_id(result) or result.startswith("_")


@settings(max_examples=300)
@given(value=KEYISH, cfg=st.sampled_from(CONFIGS))
def test_resolve_session_store_key_is_idempotent(value, cfg):
    """A canonical key canonicalises to itself, and the result has no ASCII capitals."""
    once = keys.resolve_session_store_key(cfg=cfg, session_key=value)
    assert keys.resolve_session_store_key(cfg=cfg, session_key=once) == once
    assert not re.search(r"[A-Z]", once)


@settings(max_examples=200)
@given(value=KEYISH, cfg=st.sampled_from(CONFIGS))
def test_resolve_cron_target_never_raises(value, cfg):
    """Any key resolves to a configured agent and, when given, a key of that agent."""
    target = keys.resolve_cron_target(cfg=cfg, session_key=value)
    assert target.agent_id in cfg.agent_ids()
    if target.session_key not in (None, "global"):
        assert keys.resolve_agent_id_from_session_key(target.session_key) == target.agent_id

"""Session services and selectors (spec-a §2, spec-b §7.1), in process, on the real database."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from openclaw_site.errors import GatewayError, InvalidParamsError, MissingScopeError
from sessions_app import exceptions as exc
from sessions_app import selectors
from sessions_app.events import SESSIONS_GROUP
from sessions_app.models import Run, Session, TranscriptEntry
from sessions_app.rpc import READ, WRITE, RpcContext, call_sync
from sessions_app.serializers import message_row, session_row
from sessions_app.services import sessions as services

pytestmark = pytest.mark.django_db

TWO_AGENTS = {"agents": {"list": [{"id": "main", "default": True}, {"id": "ops"}]}}
WITH_PROVIDER = {
    "models": {"providers": {"local": {"baseUrl": "http://127.0.0.1:9/v1", "models": [{"id": "m1"}]}}},
}


def make(key: str, **fields) -> Session:
    session, _ = services.session_ensure(key=selectors.canonical_key(key), defaults=fields or None)
    return session


def say(session: Session, text: str, role: str = "user") -> TranscriptEntry:
    return services.transcript_append(session=session, role=role, content=text)


# --- create -----------------------------------------------------------------------------


def test_session_create_without_key_makes_dashboard_session():
    """No key → ``agent:<default>:dashboard:<uuid>`` with a fresh sessionId."""
    session = services.session_create(label="board")
    assert re.fullmatch(r"agent:main:dashboard:[0-9a-f-]{36}", session.key)
    assert session.kind == "dashboard" and session.label == "board" and session.session_id


def test_session_create_refusals(gateway_config):
    """Existing key, unknown agent, key/agent mismatch, unknown parent, malformed key."""
    gateway_config(TWO_AGENTS)
    services.session_create(key="agent:ops:work")
    with pytest.raises(exc.SessionExistsError):
        services.session_create(key="agent:ops:work")
    with pytest.raises(exc.UnknownAgentError, match="unknown agent id: ghost"):
        services.session_create(agent_id="ghost")
    with pytest.raises(exc.AgentMismatchError):
        services.session_create(key="agent:ops:other", agent_id="main")
    with pytest.raises(exc.UnknownParentSessionError, match="unknown parent session: agent:main:nope"):
        services.session_create(parent_session_key="nope")
    with pytest.raises(exc.MalformedSessionKeyError, match='invalid sessions.create params: malformed session key "agent:ops"'):
        services.session_create(key="agent:ops")
    assert Session.objects.count() == 1


def test_session_create_with_relative_key_and_parent():
    """A relative key belongs to the default agent; the parent is canonicalised."""
    services.session_ensure(key="agent:main:main")
    child = services.session_create(key="Task:One", parent_session_key="main")
    assert child.key == "agent:main:task:one" and child.parent_session_key == "agent:main:main"


def test_session_create_duplicate_label_is_refused_by_constraint():
    services.session_create(label="same")
    with pytest.raises(exc.LabelInUseError, match="label already in use: same"):
        services.session_create(label="same")


# --- patch ---------------------------------------------------------------------------------


def test_session_patch_absent_keeps_and_null_clears():
    """A field that is absent keeps its value; ``null`` clears it."""
    services.session_patch(key="main", changes={"label": "  Hub  ", "thinkingLevel": "med", "sendPolicy": "deny"})
    session = services.session_patch(key="agent:main:main", changes={"verboseLevel": "on"})
    assert session.label == "Hub" and session.settings == {"thinkingLevel": "medium", "verboseLevel": "on"}
    assert session.send_policy == "deny"
    session = services.session_patch(key="main", changes={"label": None, "thinkingLevel": None, "sendPolicy": None})
    assert session.label is None and session.send_policy is None and "thinkingLevel" not in session.settings


def test_session_patch_creates_a_missing_session_but_not_on_refusal():
    """Patching a missing key inserts it; a refused patch leaves no row behind."""
    with pytest.raises(exc.InvalidSessionPatchError):
        services.session_patch(key="fresh", changes={"thinkingLevel": "bogus"})
    assert not Session.objects.filter(key="agent:main:fresh").exists()
    session = services.session_patch(key="fresh", changes={"label": "new one"})
    assert Session.objects.get(key="agent:main:fresh").label == "new one" == session.label


def test_session_patch_label_rules(gateway_config):
    """Trimmed, ≤ 64, empty clears, unique per agent (exact, case-sensitive), free across agents."""
    gateway_config(TWO_AGENTS)
    with pytest.raises(exc.InvalidLabelError, match=r"invalid label: too long \(max 64\)"):
        services.session_patch(key="a", changes={"label": "x" * 65})
    assert services.session_patch(key="a", changes={"label": " " + "y" * 64 + " "}).label == "y" * 64
    services.session_patch(key="a", changes={"label": "worker"})
    with pytest.raises(exc.LabelInUseError, match="label already in use: worker") as caught:
        services.session_patch(key="b", changes={"label": "worker", "thinkingLevel": "high"})
    assert caught.value.details["code"] == "LABEL_IN_USE"
    assert not Session.objects.filter(key="agent:main:b").exists()  # nothing of the refused patch stuck
    assert services.session_patch(key="b", changes={"label": "Worker"}).label == "Worker"
    assert services.session_patch(key="agent:ops:b", changes={"label": "worker"}).label == "worker"
    assert services.session_patch(key="a", changes={"label": "   "}).label is None


def test_session_patch_lineage_rules():
    """spawnedBy/spawnDepth only on subagent keys, and immutable once set."""
    with pytest.raises(exc.InvalidSessionPatchError, match=r"spawnedBy is only supported for subagent:\* sessions"):
        services.session_patch(key="main", changes={"spawnedBy": "agent:main:main"})
    with pytest.raises(exc.InvalidSessionPatchError, match=r"spawnDepth is only supported for subagent:\* sessions"):
        services.session_patch(key="main", changes={"spawnDepth": 1})
    key = "agent:main:subagent:abc"
    session = services.session_patch(key=key, changes={"spawnedBy": "agent:main:main", "spawnDepth": 1})
    assert (session.spawned_by, session.spawn_depth) == ("agent:main:main", 1)
    services.session_patch(key=key, changes={"spawnedBy": "agent:main:main", "spawnDepth": 1})  # same value: ok
    for changes, message in (
        ({"spawnedBy": "agent:main:other"}, "spawnedBy cannot be changed once set"),
        ({"spawnedBy": None}, "spawnedBy cannot be cleared once set"),
        ({"spawnDepth": 2}, "spawnDepth cannot be changed once set"),
        ({"spawnDepth": None}, "spawnDepth cannot be cleared once set"),
        ({"spawnedBy": "  "}, "invalid spawnedBy: empty"),
    ):
        with pytest.raises(exc.InvalidSessionPatchError, match=re.escape(message)):
            services.session_patch(key=key, changes=changes)


def test_session_patch_levels():
    """Levels are normalised; off clears reasoning/usage but is stored for elevated."""
    session = services.session_patch(key="main", changes={
        "thinkingLevel": "ULTRA", "reasoningLevel": "stream", "responseUsage": "on", "elevatedLevel": "off",
        "execHost": "Gateway", "execSecurity": "allowlist", "execAsk": "on-miss", "execNode": " n1 ",
        "fastMode": True, "groupActivation": "always", "verboseLevel": "full",
    })  # fmt: skip
    assert session.settings == {
        "thinkingLevel": "high", "reasoningLevel": "stream", "responseUsage": "tokens", "elevatedLevel": "off",
        "execHost": "gateway", "execSecurity": "allowlist", "execAsk": "on-miss", "execNode": "n1",
        "fastMode": True, "groupActivation": "always", "verboseLevel": "full",
    }  # fmt: skip
    session = services.session_patch(key="main", changes={"reasoningLevel": "off", "responseUsage": "off"})
    assert "reasoningLevel" not in session.settings and "responseUsage" not in session.settings
    for changes, message in (
        ({"thinkingLevel": "lots"}, "invalid thinkingLevel (use off|minimal|low|medium|high|adaptive)"),
        ({"thinkingLevel": "xhigh"}, 'thinkingLevel "xhigh" is only supported for'),
        ({"verboseLevel": "loud"}, 'invalid verboseLevel (use "on"|"off")'),
        ({"elevatedLevel": "max"}, 'invalid elevatedLevel (use "on"|"off"|"ask"|"full")'),
        ({"execAsk": "never"}, 'invalid execAsk (use "off"|"on-miss"|"always")'),
        ({"execNode": " "}, "invalid execNode: empty"),
    ):
        with pytest.raises(exc.InvalidSessionPatchError, match=re.escape(message)):
            services.session_patch(key="main", changes=changes)


def test_session_patch_model_override(gateway_config):
    """A model resolves through the config; the agent default or ``null`` clears the override."""
    gateway_config(WITH_PROVIDER)
    session = services.session_patch(key="main", changes={"model": "local/m1"})
    assert (session.provider_override, session.model_override, session.model_override_source) == ("local", "m1", "user")
    assert session_row(session)["model"] == "m1" and session_row(session)["modelProvider"] == "local"
    assert services.session_patch(key="main", changes={"model": "m1"}).model_override == "m1"
    with pytest.raises(exc.InvalidSessionPatchError, match="unknown model provider"):
        services.session_patch(key="main", changes={"model": "nope/x"})
    session = services.session_patch(key="main", changes={"model": None})
    assert session.model_override is None and session_row(session)["model"] == "scripted"
    assert services.session_patch(key="main", changes={"model": "offline/scripted"}).model_override is None


def test_session_patch_queue_overrides():
    session = services.session_patch(key="main", changes={
        "queueMode": "queue", "queueDebounceMs": 250, "queueCap": 5, "queueDrop": "old"})  # fmt: skip
    assert (session.queue_mode, session.queue_debounce_ms, session.queue_cap, session.queue_drop) == ("steer", 250, 5, "old")
    with pytest.raises(exc.InvalidSessionPatchError, match="invalid queueMode"):
        services.session_patch(key="main", changes={"queueMode": "later"})
    with pytest.raises(exc.InvalidSessionPatchError, match="invalid queueDrop"):
        services.session_patch(key="main", changes={"queueDrop": "all"})
    session = services.session_patch(key="main", changes={"queueMode": None, "queueCap": None})
    assert session.queue_mode is None and session.queue_cap is None and session.queue_drop == "old"


def test_session_patch_malformed_key_is_refused():
    with pytest.raises(exc.MalformedSessionKeyError, match='invalid sessions.patch params: malformed session key "agent:ops"'):
        services.session_patch(key="agent:ops", changes={"label": "x"})


# --- reset and delete ------------------------------------------------------------------------


def test_session_reset_rotates_and_keeps_settings():
    """New sessionId, old messages archived, counters zero, user settings kept, runs stopped."""
    session = services.session_patch(key="main", changes={"label": "hub", "thinkingLevel": "low", "sendPolicy": "deny"})
    Session.objects.filter(pk=session.pk).update(input_tokens=5, output_tokens=7, total_tokens=12, system_sent=True)
    say(session, "before")
    queued = Run.objects.create(session=session, session_key=session.key, agent_id="main", status="queued")
    running = Run.objects.create(session=session, session_key=session.key, agent_id="main", status="running")
    old_id = session.session_id
    reset = services.session_reset(key="main", reason="new")
    assert reset.session_id != old_id and reset.label == "hub" and reset.send_policy == "deny"
    assert reset.settings["thinkingLevel"] == "low"
    assert (reset.input_tokens, reset.output_tokens, reset.total_tokens, reset.system_sent) == (0, 0, 0, False)
    assert TranscriptEntry.objects.get(session=reset).archived is True
    queued.refresh_from_db()
    running.refresh_from_db()
    assert (queued.status, queued.abort_requested) == ("aborted", True)
    assert (running.status, running.abort_requested) == ("running", True)
    say(reset, "after")
    history = selectors.chat_history(key="main")
    assert [m["content"][0]["text"] for m in history["messages"]] == ["after"]
    assert history["sessionId"] == reset.session_id


def test_session_delete_refuses_main_and_archives(settings, tmp_path):
    """The main session (any alias) cannot be deleted; another is removed, its transcript archived."""
    settings.OPENCLAW_STATE_DIR = tmp_path
    make("main")
    for alias in ("main", "agent:main:main", "AGENT:MAIN:MAIN"):
        with pytest.raises(exc.MainSessionDeleteError, match=re.escape("Cannot delete the main session (agent:main:main).")):
            services.session_delete(key=alias)
    other = make("scratch")
    say(other, "old one")
    say(other, "old two")
    other = services.session_reset(key="scratch")
    say(other, "keep me")
    result = services.session_delete(key="scratch")
    assert result["deleted"] is True and result["key"] == "agent:main:scratch"
    assert not Session.objects.filter(key="agent:main:scratch").exists()
    assert len(result["archived"]) == 2  # one file per transcript (before and after the reset)
    lines = [json.loads(line) for line in Path(result["archived"][1]).read_text().splitlines()]
    assert lines[0] == {"type": "session", "version": 1, "id": other.session_id, "key": "agent:main:scratch"}
    assert [line["message"]["content"][0]["text"] for line in lines[1:]] == ["keep me"]
    assert services.session_delete(key="scratch") == {"ok": True, "key": "agent:main:scratch", "deleted": False, "archived": []}


# --- resolve and list --------------------------------------------------------------------------


def test_session_resolve_by_key_session_id_and_label(gateway_config):
    gateway_config(TWO_AGENTS)
    hub = services.session_patch(key="main", changes={"label": "hub"})
    services.session_patch(key="agent:ops:main", changes={"label": "hub"})
    assert selectors.session_resolve(key="MAIN") == "agent:main:main"
    assert selectors.session_resolve(session_id=hub.session_id) == "agent:main:main"
    assert selectors.session_resolve(label=" hub ", agent_id="ops") == "agent:ops:main"
    cases = (
        ({"key": "main", "label": "hub"}, "Provide either key, sessionId, or label (not multiple)"),
        ({}, "Either key, sessionId, or label is required"),
        ({"key": "nothing"}, "No session found: agent:main:nothing"),
        ({"session_id": "nope"}, "No session found: nope"),
        ({"label": "ghost"}, "No session found with label: ghost"),
        ({"label": "hub"}, "Multiple sessions found with label: hub (agent:"),
        ({"label": "z" * 65}, "invalid label: too long (max 64)"),
    )
    for kwargs, message in cases:
        with pytest.raises(GatewayError, match=re.escape(message)):
            selectors.session_resolve(**kwargs)


def test_session_resolve_duplicate_session_id():
    a, b = make("a"), make("b")
    Session.objects.filter(pk=b.pk).update(session_id=a.session_id)
    with pytest.raises(exc.AmbiguousSessionError, match=f"Multiple sessions found for sessionId: {a.session_id}"):
        selectors.session_resolve(session_id=a.session_id)


def test_session_list_filters_and_order(gateway_config):
    """Newest first; cron-run, global and unknown hidden unless asked; filters combine."""
    gateway_config(TWO_AGENTS)
    old = make("old", label="first")
    Session.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(hours=3))
    for key in ("agent:ops:cron:job1", "agent:ops:cron:job1:run:r1", "global", "unknown", "agent:ops:subagent:k"):
        make(key)
    Session.objects.filter(key="agent:ops:subagent:k").update(spawned_by="agent:ops:main", display_name="Reviewer")
    newest = make("newest")
    keys_of = lambda result: [row["key"] for row in result["sessions"]]  # noqa: E731
    listed = selectors.session_list()
    assert keys_of(listed)[0] == newest.key and keys_of(listed)[-1] == old.key
    assert "agent:ops:cron:job1:run:r1" not in keys_of(listed) and "agent:ops:cron:job1" in keys_of(listed)
    assert "global" not in keys_of(listed) and "unknown" not in keys_of(listed)
    both = selectors.session_list(include_global=True, include_unknown=True)
    assert {"global", "unknown"} <= set(keys_of(both))
    assert keys_of(selectors.session_list(agent_id="OPS")) == ["agent:ops:subagent:k", "agent:ops:cron:job1"]
    assert keys_of(selectors.session_list(label="first")) == [old.key]
    assert keys_of(selectors.session_list(spawned_by="agent:ops:main")) == ["agent:ops:subagent:k"]
    assert keys_of(selectors.session_list(search="review")) == ["agent:ops:subagent:k"]
    assert old.key not in keys_of(selectors.session_list(active_minutes=60))
    page = selectors.session_list(limit=2, offset=1)
    assert page["count"] == 2 and page["totalCount"] == 4 and page["hasMore"] and page["nextOffset"] == 3
    assert page["defaults"] == {"modelProvider": "offline", "model": "scripted", "contextTokens": None}


def test_session_row_shape():
    """The camelCase row: ids, kind, lineage, usage, settings; empty fields left out."""
    parent = make("main")
    child = services.session_patch(key="agent:main:subagent:x", changes={"spawnedBy": parent.key, "label": "kid"})
    row = session_row(parent)
    assert row["key"] == "agent:main:main" and row["kind"] == "direct" and row["classification"] == "main"
    assert row["isMain"] is True and row["childSessions"] == [child.key] and "label" not in row
    assert row["inputTokens"] == 0 and row["totalTokensFresh"] is True and isinstance(row["updatedAt"], int)
    assert session_row(child)["spawnedBy"] == parent.key and session_row(child)["label"] == "kid"


# --- send policy -------------------------------------------------------------------------------


def test_send_policy_resolution(gateway_config):
    """Override wins; first matching deny rule; any allow rule; else the default."""
    gateway_config({"session": {"sendPolicy": {"default": "deny", "rules": [
        {"action": "allow", "match": {"keyPrefix": "agent:main:ok"}},
        {"action": "deny", "match": {"channel": "telegram", "chatType": "group"}},
        {"action": "allow", "match": {"channel": "telegram"}},
    ]}}})  # fmt: skip
    assert selectors.resolve_send_policy(make("plain")) == "deny"
    assert selectors.resolve_send_policy(make("ok:1")) == "allow"
    assert selectors.resolve_send_policy(make("telegram:group:42")) == "deny"
    assert selectors.resolve_send_policy(make("telegram:direct:7")) == "allow"
    overridden = services.session_patch(key="telegram:group:42", changes={"sendPolicy": "allow"})
    assert selectors.resolve_send_policy(overridden) == "allow"
    with pytest.raises(exc.SendBlockedError, match="send blocked by session policy"):
        selectors.assert_send_allowed(make("plain"))


# --- transcripts -------------------------------------------------------------------------------


def test_chat_history_limit_and_shape():
    session = make("main")
    entries = [say(session, f"m{i}", role="user" if i % 2 else "assistant") for i in range(5)]
    history = selectors.chat_history(key="main", limit=3)
    assert [m["content"][0]["text"] for m in history["messages"]] == ["m2", "m3", "m4"]
    assert history["messages"][-1]["__openclaw"] == {"id": entries[4].message_id, "seq": 5, "runId": None}
    assert history["totalMessages"] == 5 and history["hasMore"] is True
    assert selectors.chat_history(key="nobody") == {
        "sessionKey": "agent:main:nobody", "sessionId": None, "messages": [], "totalMessages": 0, "hasMore": False,
    }  # fmt: skip
    say(session, "a long message")
    assert selectors.chat_history(key="main", limit=1, max_chars=6)["messages"][0]["content"][0]["text"] == "a lon…"


def test_chat_inject_appends_an_assistant_note():
    session = make("main")
    entry = services.chat_inject(key="main", message="from the CLI child", label="child")
    row = message_row(entry)
    assert row["role"] == "assistant" and row["stopReason"] == "injected"
    assert row["content"] == [{"type": "text", "text": "[child]\n\nfrom the CLI child"}]
    assert row["usage"]["totalTokens"] == 0 and entry.session_id == session.pk


def test_chat_inject_missing_session_and_create_if_missing():
    with pytest.raises(exc.SessionNotFoundError, match="session not found"):
        services.chat_inject(key="later", message="x")
    assert not Session.objects.exists()
    entry = services.chat_inject(key="later", message="x", create_if_missing=True)
    assert entry.session.key == "agent:main:later"


def test_chat_inject_truncates_over_100_kb():
    make("main")
    entry = services.chat_inject(key="main", message="é" * 80_000)  # 160,000 bytes
    text = entry.text
    assert len(text.encode()) <= services.INJECT_MAX_BYTES
    assert re.search(r"\[truncated: \d+ of 160000 bytes omitted", text)
    assert services.chat_inject(key="main", message="a" * 1000).text == "a" * 1000


def test_chat_inject_enforces_send_policy(gateway_config):
    """Denied by the override or by config rules; nothing appended, nothing created."""
    services.session_patch(key="main", changes={"sendPolicy": "deny"})
    with pytest.raises(exc.SendBlockedError, match="send blocked by session policy"):
        services.chat_inject(key="main", message="x")
    gateway_config({"session": {"sendPolicy": {"default": "deny"}}})
    with pytest.raises(exc.SendBlockedError):
        services.chat_inject(key="fresh", message="x", create_if_missing=True)
    assert not TranscriptEntry.objects.exists() and not Session.objects.filter(key="agent:main:fresh").exists()


# --- events ----------------------------------------------------------------------------------------


def test_mutations_publish_sessions_changed_after_commit(django_capture_on_commit_callbacks):
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(SESSIONS_GROUP, channel)
    with django_capture_on_commit_callbacks(execute=True):
        services.session_patch(key="main", changes={"label": "hub"})
    message = async_to_sync(layer.receive)(channel)
    payload = message["payload"]
    assert message["event"] == "sessions.changed" and payload["reason"] == "patch"
    assert payload["sessionKey"] == "agent:main:main" and payload["session"]["label"] == "hub"
    assert payload["agentId"] == "main" and isinstance(payload["ts"], int)
    async_to_sync(layer.group_discard)(SESSIONS_GROUP, channel)


def test_transcript_append_publishes_session_message(django_capture_on_commit_callbacks):
    from sessions_app.events import session_group
    from sessions_app.models import SessionEvent

    session = make("main")
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(session_group(session.key), channel)
    with django_capture_on_commit_callbacks(execute=True):
        entry = say(session, "hello")
    message = async_to_sync(layer.receive)(channel)
    assert message["event"] == "session.message"
    assert message["payload"]["messageId"] == entry.message_id and message["payload"]["messageSeq"] == 1
    assert SessionEvent.objects.filter(session=session, event="session.message").count() == 1
    async_to_sync(layer.group_discard)(session_group(session.key), channel)


# --- RPC doors (in process) --------------------------------------------------------------------


def test_rpc_params_scopes_and_webchat():
    """Closed schemas, scope checks and the WebChat rule, through ``call_sync``."""
    admin = RpcContext()
    with pytest.raises(InvalidParamsError, match="invalid sessions.patch params: must have required property 'key'"):
        call_sync(admin, "sessions.patch", {})
    with pytest.raises(InvalidParamsError, match=r"must NOT have additional properties \(bogus\)"):
        call_sync(admin, "sessions.list", {"bogus": 1})
    with pytest.raises(MissingScopeError):
        call_sync(RpcContext(scopes=frozenset({READ})), "sessions.create", {})
    writer = RpcContext(scopes=frozenset({WRITE}))
    with pytest.raises(MissingScopeError, match="missing scope: operator.admin"):
        call_sync(writer, "sessions.patch", {"key": "main", "label": "w", "sendPolicy": "deny"})
    assert not Session.objects.filter(label="w").exists()  # refused whole, before any write
    assert call_sync(writer, "sessions.patch", {"key": "main", "label": "w"})["entry"]["label"] == "w"
    webchat = RpcContext(client={"id": "webchat-ui", "mode": "webchat"})
    with pytest.raises(exc.WebchatMutationError, match="webchat clients cannot patch sessions; use chat.send"):
        call_sync(webchat, "sessions.patch", {"key": "main", "label": "x"})
    control = RpcContext(client={"id": "openclaw-control-ui", "mode": "webchat"})
    assert call_sync(control, "sessions.patch", {"key": "main", "label": "x"})["entry"]["label"] == "x"
    created = call_sync(admin, "sessions.create", {"message": "hi"})
    assert created["runStarted"] is True and Run.objects.get(run_id=created["runId"]).session_key == created["key"]

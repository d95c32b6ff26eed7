"""The offline scripted model: rule matching, templates, tool calls, streaming chunks."""

from __future__ import annotations

import json

import pytest

from sessions_app.providers import ModelRequest, ProviderError, Stop, TextDelta, ToolCall, Usage
from sessions_app.providers.offline import OfflineProvider, latest_input


async def collect(messages, monkeypatch=None):
    items = [item async for item in OfflineProvider().stream(ModelRequest(model="scripted", messages=messages))]
    text = "".join(i.text for i in items if isinstance(i, TextDelta))
    return items, text


@pytest.fixture
def rules(tmp_path, monkeypatch):
    def write(rule_list):
        path = tmp_path / f"rules-{len(rule_list)}.json"
        path.write_text(json.dumps({"rules": rule_list}))
        monkeypatch.setenv("OPENCLAW_OFFLINE_RULES", str(path))

    monkeypatch.delenv("OPENCLAW_OFFLINE_RULES", raising=False)
    return write


async def test_offline_builtin_rule_echoes_the_user_message(rules):
    items, text = await collect([{"role": "system", "content": "x"}, {"role": "user", "content": "hello there"}])
    assert text == "Hello! I'm the offline model of this gateway. You said: hello there"
    assert isinstance(items[-1], Stop) and items[-1].reason == "stop"
    assert any(isinstance(i, Usage) and i.output_tokens > 0 for i in items)


async def test_offline_rules_match_substring_regex_and_fill_templates(rules):
    rules([{"regex": r"weather in (\w+)", "reply": "Sunny in {1}.", "chunkSize": 2},
           {"match": "PING", "reply": "pong: {user}"}])  # fmt: skip
    items, text = await collect([{"role": "user", "content": "weather in Paris?"}])
    assert text == "Sunny in Paris."
    assert len([i for i in items if isinstance(i, TextDelta)]) == 8
    _, text = await collect([{"role": "user", "content": "ping me"}])
    assert text == "pong: ping me"


async def test_offline_tool_rule_fires_on_user_input_only(rules):
    rules([{"match": "sleep", "toolCalls": [{"name": "test_sleep", "arguments": {"ms": 5, "text": "{user}"}}]}])
    items, _ = await collect([{"role": "user", "content": "sleep now"}])
    [call] = [i for i in items if isinstance(i, ToolCall)]
    assert call.name == "test_sleep" and call.arguments == {"ms": 5, "text": "sleep now"}
    assert items[-1].reason == "tool_calls"
    after = [{"role": "user", "content": "sleep now"}, {"role": "assistant", "content": None, "tool_calls": []},
             {"role": "tool", "tool_call_id": "c", "content": '{"text": "sleep now"}'}]  # fmt: skip
    items, text = await collect(after)
    assert not [i for i in items if isinstance(i, ToolCall)] and text == 'Done. {"text": "sleep now"}'


def test_latest_input_separates_system_lines_tool_results_and_user_text():
    latest = latest_input([
        {"role": "user", "content": "old"}, {"role": "assistant", "content": "a"},
        {"role": "tool", "tool_call_id": "1", "content": "result"},
        {"role": "user", "content": "System: [2026-01-01T00:00:00Z] ping\n\nnew body"},
    ])  # fmt: skip
    assert latest.user == "new body" and latest.system == "System: [2026-01-01T00:00:00Z] ping"
    assert latest.tool_results == "result" and latest.has_tool and latest.has_user


async def test_offline_error_rule_and_bad_file_raise_provider_errors(rules, tmp_path, monkeypatch):
    rules([{"match": "fail", "error": "scripted failure"}])
    with pytest.raises(ProviderError, match="scripted failure"):
        await collect([{"role": "user", "content": "fail please"}])
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    monkeypatch.setenv("OPENCLAW_OFFLINE_RULES", str(bad))
    with pytest.raises(ProviderError, match="not valid JSON"):
        await collect([{"role": "user", "content": "x"}])


async def test_offline_rules_path_from_the_config(rules, tmp_path, gateway_config):
    path = tmp_path / "from-config.json"
    path.write_text(json.dumps([{"match": "hi", "reply": "configured"}]))
    gateway_config({"models": {"providers": {"offline": {"rulesPath": str(path)}}}})
    _, text = await collect([{"role": "user", "content": "hi"}])
    assert text == "configured"


async def test_offline_builtin_rule_acks_a_quiet_heartbeat_and_answers_a_busy_one(rules):
    """The default heartbeat prompt gets HEARTBEAT_OK unless System: lines came with it."""
    from openclaw_site.config import DEFAULT_HEARTBEAT_PROMPT

    _, quiet = await collect([{"role": "user", "content": DEFAULT_HEARTBEAT_PROMPT}])
    assert quiet == "HEARTBEAT_OK"
    busy = f"System: [2026-12-02T06:00:00Z] deploy finished\n\n{DEFAULT_HEARTBEAT_PROMPT}"
    _, answer = await collect([{"role": "user", "content": busy}])
    assert answer.startswith("Hello! I'm the offline model")

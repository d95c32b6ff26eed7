"""The OpenAI-compatible chat-completions provider (OpenAI, Ollama, vLLM, llama.cpp …).

Configured as ``models.providers.<name> {baseUrl, apiKey, api: "openai-completions",
headers}``. Every step is one streaming ``POST /chat/completions`` with
``stream_options.include_usage`` and, when the agent has tools, ``tool_choice: "auto"``.
Tool-call fragments are assembled per index and yielded once the stream ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator

import openai
from openai import AsyncOpenAI

from . import ModelRequest, ProviderError, Stop, StreamItem, TextDelta, ToolCall, Usage

logger = logging.getLogger(__name__)

# One client (one connection pool) per provider and event loop: a pool must not be
# shared across loops, and a new pool per step would reconnect every time.
_clients: dict[tuple, AsyncOpenAI] = {}


def _client(config) -> AsyncOpenAI:
    loop = asyncio.get_running_loop()
    key = (id(loop), config.base_url, config.api_key, tuple(sorted(config.headers.items())))
    client = _clients.get(key)
    if client is None:
        client = AsyncOpenAI(
            base_url=config.base_url, api_key=config.api_key or "not-needed",
            default_headers=config.headers or None, max_retries=1, timeout=600,
        )  # fmt: skip
        _clients[key] = client
    return client


class OpenAICompatProvider:
    def __init__(self, config) -> None:
        self.config = config
        self.name = config.name

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]:
        """Stream one step; raises :class:`ProviderError` on connection or API errors."""
        try:
            response = await _client(self.config).chat.completions.create(**self._body(request))
            async for item in _read_stream(response):
                yield item
        except openai.APIError as exc:
            raise ProviderError(f"LLM request failed: {exc}") from exc

    def _body(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = request.tools
            body["tool_choice"] = "auto"
        model = self.config.model(request.model)
        max_tokens = request.max_tokens or (model.max_tokens if model else None)
        if max_tokens:
            body["max_completion_tokens"] = max_tokens
        return body


async def _read_stream(response) -> AsyncIterator[StreamItem]:
    calls: dict[int, dict[str, str]] = {}
    finish = "stop"
    async for chunk in response:
        if chunk.usage:
            yield Usage(input_tokens=chunk.usage.prompt_tokens or 0, output_tokens=chunk.usage.completion_tokens or 0)
        for choice in chunk.choices or []:
            delta = choice.delta
            if delta and delta.content:
                yield TextDelta(delta.content)
            for fragment in (delta.tool_calls if delta else None) or []:
                _merge_fragment(calls, fragment)
            if choice.finish_reason:
                finish = choice.finish_reason
    for index in sorted(calls):
        yield _tool_call(calls[index], index)
    yield Stop("tool_calls" if calls else finish)


def _merge_fragment(calls: dict[int, dict[str, str]], fragment) -> None:
    call = calls.setdefault(fragment.index or 0, {"id": "", "name": "", "arguments": ""})
    if fragment.id:
        call["id"] = fragment.id
    function = fragment.function
    if function is not None:
        if function.name and not call["name"]:
            call["name"] = function.name
        call["arguments"] += function.arguments or ""


def _tool_call(call: dict[str, str], index: int) -> ToolCall:
    try:
        arguments = json.loads(call["arguments"]) if call["arguments"].strip() else {}
    except ValueError:
        arguments = {"__raw": call["arguments"]}
    if not isinstance(arguments, dict):
        arguments = {"__raw": arguments}
    return ToolCall(id=call["id"] or f"call_{index}", name=call["name"], arguments=arguments)


__all__ = ["OpenAICompatProvider", "ProviderError"]

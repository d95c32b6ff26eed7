"""Model providers: one streaming interface over every model the engine can call.

A provider turns a :class:`ModelRequest` (OpenAI-style chat messages plus tool specs)
into an async stream of :class:`TextDelta`, :class:`ToolCall`, :class:`Usage` and a
final :class:`Stop`. ``openai_compat`` speaks the chat-completions API of OpenAI,
Ollama, vLLM, llama.cpp server…; ``offline`` is the deterministic scripted model that
needs no network (the embedded default). :func:`get_provider` picks one from
``models.providers.<name>`` of the loaded config; :func:`resolve_session_model` says
which ``(provider, model)`` a session's agent uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol, Union


@dataclass
class ModelRequest:
    """One model step: ``messages`` in chat-completions shape, ``tools`` as function specs."""

    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    max_tokens: int | None = None


@dataclass
class TextDelta:
    text: str


@dataclass
class ToolCall:
    """A complete tool call of this step; ``arguments`` is the parsed JSON object."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass
class Stop:
    """The end of the step: ``reason`` is ``stop``, ``tool_calls``, ``length`` …"""

    reason: str


StreamItem = Union[TextDelta, ToolCall, Usage, Stop]


class ProviderError(Exception):
    """The model could not be reached or answered with an error (the run ends ``error``)."""


class Provider(Protocol):
    name: str

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamItem]: ...


def get_provider(name: str) -> Provider:
    """The provider configured as ``models.providers.<name>`` (``offline`` is built in)."""
    from openclaw_site.config import get_config

    config = get_config().providers.get(name)
    if config is None:
        raise ProviderError(f"unknown model provider: {name}")
    if config.api == "offline":
        from .offline import OfflineProvider

        return OfflineProvider()
    from .openai_compat import OpenAICompatProvider

    return OpenAICompatProvider(config)


def resolve_session_model(*, agent_id: str, provider_override: str | None = None,
                          model_override: str | None = None) -> tuple[str, str]:
    """``(provider, model)`` for a turn: the session's override, else the agent's model."""
    from openclaw_site.config import get_config

    cfg = get_config()
    if model_override:
        ref = f"{provider_override}/{model_override}" if provider_override else model_override
        return cfg.resolve_model(ref)
    agent = cfg.agent(agent_id) or cfg.agent(cfg.default_agent_id())
    return cfg.resolve_model(agent.model if agent else None)

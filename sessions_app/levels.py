"""Per-session toggles of ``sessions.patch``: how a client's word maps to a stored level.

Pure functions (OpenClaw ``auto-reply/thinking``): each returns the canonical level or
None when the word is not understood; callers turn None into the patch error message.
"""

from __future__ import annotations

import re

THINKING_LEVELS = ("off", "minimal", "low", "medium", "high", "adaptive")

_THINK_WORDS = {
    "off": "off",
    "on": "low", "enable": "low", "enabled": "low", "low": "low", "thinkhard": "low",
    "think-hard": "low", "think_hard": "low",
    "min": "minimal", "minimal": "minimal", "think": "minimal",
    "mid": "medium", "med": "medium", "medium": "medium", "thinkharder": "medium",
    "think-harder": "medium", "harder": "medium",
    "high": "high", "ultra": "high", "ultrathink": "high", "thinkhardest": "high", "highest": "high", "max": "high",
}  # fmt: skip
_OFF = ("off", "false", "no", "0")
_XHIGH_MODELS = {
    "openai": ("gpt-5.4", "gpt-5.4-pro", "gpt-5.4-mini", "gpt-5.4-nano", "gpt-5.2"),
    "openai-codex": ("gpt-5.4", "gpt-5.3-codex", "gpt-5.3-codex-spark", "gpt-5.2-codex", "gpt-5.1-codex"),
}
XHIGH_HINT = "provider models that advertise xhigh reasoning"


def normalize_think_level(raw: str | None) -> str | None:
    """``off|minimal|low|medium|high|xhigh|adaptive`` from a client's word (aliases allowed)."""
    key = (raw or "").strip().lower()
    collapsed = re.sub(r"[\s_-]+", "", key)
    if collapsed in ("adaptive", "auto"):
        return "adaptive"
    if collapsed in ("xhigh", "extrahigh"):
        return "xhigh"
    return _THINK_WORDS.get(key)


def supports_xhigh(provider: str | None, model: str | None) -> bool:
    """True for the models OpenClaw knows to take ``xhigh`` thinking."""
    ids = _XHIGH_MODELS.get((provider or "").strip().lower(), ())
    model = (model or "").strip().lower()
    return any(model == known or model.startswith(f"{known}-") for known in ids)


def thinking_levels_hint(provider: str | None, model: str | None) -> str:
    levels = list(THINKING_LEVELS)
    if supports_xhigh(provider, model):
        levels.insert(len(levels) - 1, "xhigh")
    return "|".join(levels)


def normalize_verbose_level(raw: str | None) -> str | None:
    key = (raw or "").strip().lower()
    if key in _OFF:
        return "off"
    if key in ("full", "all", "everything"):
        return "full"
    return "on" if key in ("on", "minimal", "true", "yes", "1") else None


def normalize_reasoning_level(raw: str | None) -> str | None:
    key = (raw or "").strip().lower()
    if key in (*_OFF, "hide", "hidden", "disable", "disabled"):
        return "off"
    if key in ("on", "true", "yes", "1", "show", "visible", "enable", "enabled"):
        return "on"
    return "stream" if key in ("stream", "streaming", "draft", "live") else None


def normalize_usage_display(raw: str | None) -> str | None:
    key = (raw or "").strip().lower()
    if key in (*_OFF, "disable", "disabled"):
        return "off"
    if key in ("on", "true", "yes", "1", "enable", "enabled", "tokens", "token", "tok", "minimal", "min"):
        return "tokens"
    return "full" if key in ("full", "session") else None


def normalize_elevated_level(raw: str | None) -> str | None:
    key = (raw or "").strip().lower()
    if key in _OFF:
        return "off"
    if key in ("full", "auto", "auto-approve", "autoapprove"):
        return "full"
    if key in ("ask", "prompt", "approval", "approve"):
        return "ask"
    return "on" if key in ("on", "true", "yes", "1") else None


def normalize_choice(raw: str | None, choices: tuple[str, ...]) -> str | None:
    key = (raw or "").strip().lower()
    return key if key in choices else None


EXEC_HOSTS = ("sandbox", "gateway", "node", "remote-ssh", "remote-container", "remote-k8s-pod")
EXEC_SECURITY = ("deny", "allowlist", "full")
EXEC_ASK = ("off", "on-miss", "always")
SEND_POLICIES = ("allow", "deny")
GROUP_ACTIVATIONS = ("mention", "always")
SUBAGENT_ROLES = ("orchestrator", "leaf")
SUBAGENT_CONTROL_SCOPES = ("children", "none")

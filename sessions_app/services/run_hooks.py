"""What happens after a run ends, by run kind, without the engine knowing every feature.

Features register ``fn(run)`` for a kind (heartbeat handling, sub-agent announce,
agent-to-agent ping-pong…). The engine calls :func:`run_finished` once a run reached
a terminal state and that state is committed; hooks are sync and run in a worker thread.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Callable

logger = logging.getLogger(__name__)

_HOOKS: dict[str, list[Callable]] = defaultdict(list)
ANY_KIND = "*"


def on_run_finished(kind: str = ANY_KIND):
    """Decorator: call ``fn(run)`` when a run of ``kind`` (or any, with "*") ends."""

    def register(fn):
        if fn not in _HOOKS[kind]:
            _HOOKS[kind].append(fn)
        return fn

    return register


def run_finished(run) -> None:
    for fn in [*_HOOKS.get(run.kind, []), *_HOOKS.get(ANY_KIND, [])]:
        try:
            fn(run)
        except Exception:  # one feature's failure must not stop the others
            logger.exception("run_finished hook %s failed for %s", getattr(fn, "__name__", fn), run.run_id)

"""Bounded waits for the end of a run (``agent.wait``, the ``agent`` final response).

The database is the truth: the run row is read first, then re-read whenever the
session's ``agent`` lifecycle end/error event for the run arrives through the channel
layer, and at least every second (another process may hold the run's events).
"""

from __future__ import annotations

import asyncio
import time

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from ..events import session_group
from ..models import Run

RECHECK_S = 1.0


def _load(run_id: str) -> Run | None:
    return Run.objects.filter(run_id=run_id).first()


async def run_wait(run_id: str, timeout_s: float) -> Run | None:
    """The run once terminal, or its current row (None if unknown) after ``timeout_s``."""
    run = await sync_to_async(_load)(run_id)
    if (run is not None and run.is_terminal) or timeout_s <= 0:
        return run
    deadline = time.monotonic() + timeout_s
    layer = get_channel_layer()
    channel = await layer.new_channel() if layer is not None and run is not None else None
    group = session_group(run.session_key) if run is not None and run.session_key else None
    if channel and group:
        await layer.group_add(group, channel)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return run
            await _next_signal(layer, channel if group else None, run_id, min(remaining, RECHECK_S))
            run = await sync_to_async(_load)(run_id)
            if run is not None and run.is_terminal:
                return run
    finally:
        if channel and group:
            await layer.group_discard(group, channel)


async def _next_signal(layer, channel: str | None, run_id: str, wait_s: float) -> None:
    """Return when the run's lifecycle ends (as far as events tell) or after ``wait_s``."""
    if channel is None:
        await asyncio.sleep(wait_s)
        return
    deadline = time.monotonic() + wait_s
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(layer.receive(channel), remaining)
        except TimeoutError:
            return
        payload = message.get("payload") or {}
        data = payload.get("data") or {}
        if message.get("event") == "agent" and payload.get("runId") == run_id and data.get("phase") in ("end", "error"):
            return

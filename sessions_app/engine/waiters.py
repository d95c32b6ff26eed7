"""Bounded waits for the end of a run (``agent.wait``, the ``agent`` final response) and
following a run's events (the REST event stream).

The database is the truth: the run row is read first, then re-read whenever the
session's ``agent`` lifecycle end/error event for the run arrives through the channel
layer, and at least every second (another process may hold the run's events).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from ..events import session_group
from ..models import Run, SessionEvent

RECHECK_S = 1.0
FINAL_GRACE_S = 30


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


def run_wait_bound(run: Run) -> float:
    """How long a run can still take: its timeout (else its agent's) plus a grace."""
    from openclaw_site.config import get_config

    if run.timeout_s:
        return run.timeout_s + FINAL_GRACE_S
    cfg = get_config()
    agent = cfg.agent(run.agent_id) or cfg.agent(cfg.default_agent_id())
    return (agent.timeout_seconds if agent else 600) + FINAL_GRACE_S


def _stored_events(run: Run, after_seq: int, sent: set[int]) -> list[dict[str, Any]]:
    scope = {"session_id": run.session_id} if run.session_id else {"session_key": run.session_key}
    rows = SessionEvent.objects.filter(**scope, seq__gt=after_seq, payload__runId=run.run_id)
    return [row for row in rows.order_by("seq").values("seq", "event", "payload") if row["seq"] not in sent]


def _is_end(run_id: str, event: str, payload: dict[str, Any]) -> bool:
    data = payload.get("data") or {}
    return event == "agent" and payload.get("runId") == run_id and data.get("phase") in ("end", "error")


async def run_events_follow(run: Run, *, after_seq: int = 0, max_s: float) -> AsyncIterator[dict[str, Any] | None]:
    """The run's stored events after ``after_seq``, then its live ones, each ``sessionSeq``
    once (``{seq, event, payload}``); ``None`` at each quiet second. Ends once the run is
    terminal and its stored events are all out (then ``{event: "end", payload: {runId,
    status}}``), or after ``max_s``."""
    layer, group = get_channel_layer(), session_group(run.session_key) if run.session_key else None
    channel = await layer.new_channel() if layer is not None and group else None
    if channel:
        await layer.group_add(group, channel)  # first: nothing published meanwhile is missed
    deadline, sent = time.monotonic() + max_s, set()
    try:
        async for item in _follow(run, layer, channel, after_seq, sent, deadline):
            yield item
        for row in await sync_to_async(_stored_events)(run, after_seq, sent):
            yield row
        current = await sync_to_async(_load)(run.run_id)
        yield {"event": "end", "payload": {"runId": run.run_id, "status": current.status if current else "unknown"}}
    finally:
        if channel:
            await layer.group_discard(group, channel)


async def _follow(run, layer, channel, after_seq: int, sent: set[int], deadline: float):
    for row in await sync_to_async(_stored_events)(run, after_seq, sent):
        sent.add(row["seq"])
        yield row
    while (remaining := deadline - time.monotonic()) > 0:
        current = await sync_to_async(_load)(run.run_id)
        if current is None or current.is_terminal:
            return
        async for item in _live(layer, channel, run.run_id, min(remaining, RECHECK_S)):
            if item is None:
                break
            if item["seq"] is not None and (item["seq"] in sent or item["seq"] <= after_seq):
                continue
            sent.add(item["seq"])
            yield item
            if _is_end(run.run_id, item["event"], item["payload"]):
                return
        yield None


async def _live(layer, channel: str | None, run_id: str, wait_s: float):
    """The run's live events for up to ``wait_s``, then one ``None``."""
    deadline = time.monotonic() + wait_s
    while channel is not None and (remaining := deadline - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(layer.receive(channel), remaining)
        except TimeoutError:
            break
        payload = message.get("payload") or {}
        if payload.get("runId") == run_id:
            yield {"seq": message.get("sessionSeq"), "event": message.get("event"), "payload": payload}
    if channel is None:
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    yield None

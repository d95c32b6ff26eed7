"""Beyond one machine (DESIGN §7): two web processes, two or three engines and a
django-q2 cluster on one PostgreSQL database and one Redis.

- A client connected to one web process receives the events of runs that other
  processes (engines) execute; so does a subscriber on the other web process.
- The engines share the load, and each run is claimed by exactly one engine: N runs →
  N single attempts and N transcript replies, never two turns of a session at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict

import pytest
from asgiref.sync import sync_to_async

from sessions_app.models import Run, SessionEvent, TranscriptEntry
from tests.support.ws import GatewayClient

from .conftest import needs_postgres_and_redis

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True), needs_postgres_and_redis]
FIGURES: dict[str, object] = {}


def final_of(run_id: str):
    return lambda p: p.get("runId") == run_id and p.get("state") in ("final", "error", "aborted")


async def connect(process) -> GatewayClient:
    client = GatewayClient(process.ws_url)
    await client.connect(token=process.token)
    return client


def owner_pid(owner: str | None) -> int:
    return int((owner or "::").split(":")[1] or 0)


@sync_to_async
def runs_settled(run_ids: list[str]) -> list[Run]:
    runs = list(Run.objects.filter(run_id__in=run_ids))
    return runs if len(runs) == len(run_ids) and all(r.is_terminal for r in runs) else []


async def wait_settled(run_ids: list[str], timeout: float) -> list[Run]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = await runs_settled(run_ids)
        if runs:
            return runs
        await asyncio.sleep(0.25)
    raise AssertionError(f"runs not settled within {timeout}s")


@sync_to_async
def replies_by_session(prefix: str) -> dict[str, list[str]]:
    rows = TranscriptEntry.objects.filter(session__key__startswith=prefix, archived=False).order_by("seq")
    found: dict[str, list[str]] = defaultdict(list)
    for entry in rows:
        found[entry.session.key].append(entry.role)
    return found


async def test_events_cross_processes_and_engines_share_the_load(cluster):
    """30 turns sent through web 1, executed by two engine processes (at most 6 turns
    each at a time), every chat final seen by the sender on web 1 and by a subscriber on
    web 2; each run once, both engines busy, the web processes execute nothing."""
    c = cluster(env={"OPENCLAW_ENGINE_MAX_CONCURRENCY": "6"})
    web1, web2, engine1, engine2, _worker = c.start_many("web", "web", "engine", "engine", "worker")
    sender, watcher = await connect(web1), await connect(web2)
    keys = [f"agent:main:load-{n}" for n in range(30)]
    try:
        for key in keys:
            await watcher.call("sessions.messages.subscribe", {"key": key})
        started = time.monotonic()
        for n, key in enumerate(keys):
            ack = await sender.call("chat.send", {"sessionKey": key, "message": f"slow {n}", "idempotencyKey": f"load-{n}"})
            assert ack["status"] == "started"
        for n in range(30):
            for client in (sender, watcher):
                final = await client.wait_event("chat", final_of(f"load-{n}"), timeout=60)
                assert final["payload"]["state"] == "final"
                assert final["payload"]["message"]["content"][0]["text"] == f"slow reply {n}"
        elapsed = time.monotonic() - started
    finally:
        await sender.close()
        await watcher.close()
    runs = await wait_settled([f"load-{n}" for n in range(30)], timeout=30)
    assert {r.status for r in runs} == {"ok"} and {r.attempts for r in runs} == {1}
    per_engine = Counter(owner_pid(r.lease_owner) for r in runs)
    assert set(per_engine) == {engine1.pid, engine2.pid}, per_engine
    replies = await replies_by_session("agent:main:load-")
    assert {key: replies[key] for key in keys} == {key: ["user", "assistant"] for key in keys}
    FIGURES["share"] = {"runs": 30, "per_engine": sorted(per_engine.values()), "seconds": round(elapsed, 1)}


async def test_each_run_is_claimed_by_exactly_one_of_three_engines(cluster):
    """75 turns on 25 sessions (3 follow-ups each) over three engines: every run is
    attempted once, every message gets exactly one reply, and the turns of one session
    never overlap although different engines ran them."""
    c = cluster(config={"messages": {"queue": {"mode": "followup", "debounceMs": 0}}})
    web, *engines = c.start_many("web", "engine", "engine", "engine")
    client = await connect(web)
    run_ids = []
    started = time.monotonic()
    try:
        for round_ in range(3):
            for n in range(25):
                run_id = f"once-{n}-{round_}"
                await client.call("chat.send", {"sessionKey": f"agent:main:once-{n}", "message": f"slow {n}",
                                                "idempotencyKey": run_id})  # fmt: skip
                run_ids.append(run_id)
        sent = time.monotonic() - started
        runs = await wait_settled(run_ids, timeout=60)
    finally:
        await client.close()
    elapsed = time.monotonic() - started
    assert Counter(r.status for r in runs) == {"ok": 75}
    assert Counter(r.attempts for r in runs) == {1: 75}
    assert {owner_pid(r.lease_owner) for r in runs} <= {e.pid for e in engines}
    replies = await replies_by_session("agent:main:once-")
    assert len(replies) == 25 and all(roles == ["user", "assistant"] * 3 for roles in replies.values()), replies
    by_session = defaultdict(list)
    for run in runs:
        by_session[run.session_key].append((run.started_at, run.ended_at))
    for spans in by_session.values():
        spans.sort()
        assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:])), spans
    per_engine = Counter(owner_pid(r.lease_owner) for r in runs)
    FIGURES["once"] = {"runs": 75, "engines_used": len(per_engine), "per_engine": sorted(per_engine.values()),
                       "send_seconds": round(sent, 1), "seconds": round(elapsed, 1)}  # fmt: skip


async def test_a_client_that_drops_and_resumes_on_the_other_web_process_misses_nothing(cluster):
    """A client sees a turn on web 1, drops while the next turns run on the engine, then
    resumes on web 2 with ``afterSeq``: exactly the missed events (the stored ones, in
    order), then live ones, each once."""
    c = cluster()
    web1, web2, _engine = c.start_many("web", "web", "engine")
    key = "agent:main:resume"
    first = await connect(web1)
    await first.call("sessions.messages.subscribe", {"key": key})
    await first.call("chat.send", {"sessionKey": key, "message": "slow 1", "idempotencyKey": "resume-1"})
    await first.wait_event("chat", final_of("resume-1"), timeout=30)
    await asyncio.sleep(0.3)
    last_seen = max(f["payload"]["sessionSeq"] for f in first.events if "sessionSeq" in f.get("payload", {}))
    await first.call("chat.send", {"sessionKey": key, "message": "slow 2", "idempotencyKey": "resume-2"})
    await first.close()  # drops while turn 2 runs on the engine
    other = await connect(web1)
    await other.call("chat.send", {"sessionKey": key, "message": "slow 3", "idempotencyKey": "resume-3"})
    await other.close()
    await wait_settled(["resume-2", "resume-3"], timeout=30)
    missed = await sync_to_async(lambda: list(SessionEvent.objects.filter(session_key=key, seq__gt=last_seen)
                                              .order_by("seq").values_list("seq", flat=True)))()  # fmt: skip
    back = await connect(web2)
    try:
        result = await back.call("sessions.messages.subscribe", {"key": key, "afterSeq": last_seen})
        replayed = [f["payload"]["sessionSeq"] for f in back.events if "sessionSeq" in f.get("payload", {})]
        assert result["replayed"] == len(missed) > 0 and replayed == missed
        await back.call("chat.send", {"sessionKey": key, "message": "slow 4", "idempotencyKey": "resume-4"})
        await back.wait_event("chat", final_of("resume-4"), timeout=30)
        await asyncio.sleep(0.3)
        seqs = [f["payload"]["sessionSeq"] for f in back.events if "sessionSeq" in f.get("payload", {})]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)) and seqs[: len(missed)] == missed
    finally:
        await back.close()
    FIGURES["resume"] = {"missed": len(missed), "replayed": len(replayed), "after_resume_live": len(seqs) - len(missed)}


def test_scale_figures_are_reported(capsys):
    with capsys.disabled():
        print("\nscale-out figures:", FIGURES)

"""The run engine: claims queued runs and executes each as a coroutine.

Woken through the channel layer (``engine.wakeup`` after a run is queued or a lane is
freed, ``engine.abort`` for an abort) and by a database poll every
``OPENCLAW_ENGINE_POLL_S`` as the safety net. It renews the leases of its runs every
third of ``OPENCLAW_ENGINE_LEASE_S``, checks ``abort_requested`` at every poll, and takes
over runs whose lease expired. :meth:`Engine.stop` cancels the running turns and puts
them back in the queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from ..events import ENGINE_GROUP
from . import store
from .turn import Turn

logger = logging.getLogger(__name__)
CLAIM_BATCH = 100
db = sync_to_async


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Engine:
    def __init__(self, *, owner: str | None = None) -> None:
        self.owner = owner or default_owner()
        self.turns: dict[int, asyncio.Task] = {}
        self.run_pks: dict[str, int] = {}
        self._reasons: dict[int, str] = {}
        self._cancelled: set[int] = set()  # cancelled once: a second cancel would hit the turn's cleanup
        self._wake = asyncio.Event()
        self._stopping = False
        self._helpers: list[asyncio.Task] = []

    # --- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until :meth:`stop`."""
        logger.info("run engine %s started", self.owner)
        # Imported now, not by the first turn: importing the openai client takes about a
        # second and would stall every turn on the loop meanwhile.
        import sessions_app.providers.openai_compat  # noqa: F401

        self._helpers = [asyncio.create_task(self._listen()), asyncio.create_task(self._watch())]
        try:
            await self._claim_loop()
        finally:
            for task in self._helpers:
                task.cancel()

    async def stop(self, timeout: float = 3.0) -> None:
        """Stop claiming, cancel running turns (they go back to the queue), wait ≤ timeout."""
        self._stopping = True
        self._wake.set()
        for pk in list(self.turns):
            self.cancel(pk, "shutdown")
        if self.turns:
            await asyncio.wait(list(self.turns.values()), timeout=timeout)
        for task in self._helpers:
            task.cancel()

    def cancel(self, run_pk: int, reason: str) -> None:
        task = self.turns.get(run_pk)
        if task is not None and not task.done() and run_pk not in self._cancelled:
            self._cancelled.add(run_pk)
            self._reasons.setdefault(run_pk, reason)
            task.cancel()

    def cancel_reason(self, run_pk: int) -> str:
        return self._reasons.pop(run_pk, "shutdown")

    # --- claiming --------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                claimed = await self._claim_once()
            except Exception:
                logger.exception("run engine claim failed")
                claimed = 0
            if claimed >= CLAIM_BATCH:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), settings.OPENCLAW_ENGINE_POLL_S)
            except TimeoutError:
                pass

    async def _claim_once(self) -> int:
        capacity = min(settings.OPENCLAW_ENGINE_MAX_CONCURRENCY - len(self.turns), CLAIM_BATCH)
        if capacity <= 0:
            return 0
        lease_s = settings.OPENCLAW_ENGINE_LEASE_S
        pairs = await db(_claim)(owner=self.owner, limit=capacity, lease_s=lease_s, busy=list(self.turns))
        for pk, run_id in pairs:
            self._start(pk, run_id)
        return len(pairs)

    def _start(self, pk: int, run_id: str) -> None:
        if pk in self.turns:
            return
        task = asyncio.create_task(Turn(self, pk).execute(), name=f"run:{run_id}")
        self.turns[pk] = task
        self.run_pks[run_id] = pk
        task.add_done_callback(lambda t, pk=pk, run_id=run_id: self._done(t, pk, run_id))

    def _done(self, task: asyncio.Task, pk: int, run_id: str) -> None:
        self.turns.pop(pk, None)
        self.run_pks.pop(run_id, None)
        self._reasons.pop(pk, None)
        self._cancelled.discard(pk)
        if not task.cancelled() and task.exception() is not None:
            logger.error("run %s crashed", run_id, exc_info=task.exception())
        self._wake.set()

    # --- leases, aborts, notifications -----------------------------------------------

    async def _watch(self) -> None:
        """Renew leases every lease/3; look for abort requests at every poll."""
        renewed = 0.0
        while True:
            await asyncio.sleep(min(settings.OPENCLAW_ENGINE_POLL_S, settings.OPENCLAW_ENGINE_LEASE_S / 3))
            try:
                pks = list(self.turns)
                if time.monotonic() - renewed >= settings.OPENCLAW_ENGINE_LEASE_S / 3:
                    lost = await db(store.renew_leases)(owner=self.owner, run_pks=pks, lease_s=settings.OPENCLAW_ENGINE_LEASE_S)
                    renewed = time.monotonic()
                    for pk in lost:
                        self.cancel(pk, "lost")
                for pk in await db(store.abort_requested)(run_pks=pks):
                    self.cancel(pk, "abort")
            except Exception:
                logger.exception("run engine lease renewal failed")

    async def _listen(self) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()
        if layer is None:
            return
        while True:
            try:
                channel = await layer.new_channel()
                await layer.group_add(ENGINE_GROUP, channel)
                while True:
                    self._on_message(await layer.receive(channel))
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("run engine lost its channel layer; retrying")
                await asyncio.sleep(1)

    def _on_message(self, message: dict) -> None:
        if message.get("type") == "engine.abort":
            pk = self.run_pks.get(message.get("runId", ""))
            if pk is not None:
                self.cancel(pk, "abort")
        self._wake.set()


def _claim(*, owner: str, limit: int, lease_s: float, busy: list[int]) -> list[tuple[int, str]]:
    close_old_connections()
    pairs = store.recover_expired(owner=owner, limit=limit, lease_s=lease_s, exclude_pks=busy)
    return pairs + store.claim_runs(owner=owner, limit=limit - len(pairs), lease_s=lease_s)


def run_engine_forever() -> None:
    """``manage.py gateway --role engine``: the engine alone, until SIGINT/SIGTERM."""
    import signal

    async def main() -> None:
        engine = Engine()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.create_task(engine.run())
        await stop.wait()
        await engine.stop()
        task.cancel()

    asyncio.run(main())

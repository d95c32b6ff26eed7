"""The asyncio run engine (DESIGN §4): ``loop.Engine`` claims and executes runs,
``turn.Turn`` is one agent turn, ``store`` its database side, ``waiters`` bounded waits
for a run's end. See ``docs/architecture.md``."""

from .loop import Engine, run_engine_forever

__all__ = ["Engine", "run_engine_forever"]

"""Scale-out and engine-crash tests: several real gateway processes on the pytest
database. They need PostgreSQL (row locks, ``SKIP LOCKED``) and Redis (the channel layer
and the django-q2 broker), so they run in the PostgreSQL + Redis leg of ``bin/test-all``."""

from __future__ import annotations


import pytest
from django.conf import settings

from tests.support.cluster import Cluster
from tests.support.live import database_url, write_rules


def postgres_and_redis() -> bool:
    return "postgresql" in settings.DATABASES["default"]["ENGINE"] and bool(settings.REDIS_URL)


needs_postgres_and_redis = pytest.mark.skipif(
    not postgres_and_redis(), reason="needs DATABASE_URL=postgres://… and REDIS_URL (the PostgreSQL + Redis leg)"
)

RULES = [
    {"regex": r"^slow (\d+)", "reply": "slow reply {1}", "delayMs": 600},
    {"regex": r"^job (\d+)", "delayMs": 1500, "toolCalls": [
        {"id": "call_send_{1}", "name": "sessions_send",
         "arguments": {"sessionKey": "agent:main:sink-{1}", "message": "from job {1}", "timeoutSeconds": 0}}]},
    {"regex": r"^spawn (\d+)", "delayMs": 1000, "toolCalls": [
        {"id": "call_spawn_{1}", "name": "sessions_spawn", "arguments": {"task": "child {1}", "label": "c{1}"}}]},
    {"regex": r"\[Subagent Task\]: child (\d+)", "reply": "child result {1}", "delayMs": 1500},
    {"regex": r"from job (\d+)", "reply": "sink got job {1}"},
    {"on": "tool", "reply": "step done", "delayMs": 1500},
]  # fmt: skip


@pytest.fixture
def rules_file(tmp_path):
    return write_rules(tmp_path, RULES)


@pytest.fixture
def cluster(transactional_db, tmp_path, rules_file):
    """Gateway processes on the test database and the test run's Redis (stopped after)."""
    made = []

    def make(*, env: dict | None = None, config: dict | None = None) -> Cluster:
        started = Cluster(
            tmp_path / f"cluster-{len(made)}", database_url=database_url(), redis_url=settings.REDIS_URL,
            config={"agents": {"defaults": {"heartbeat": {"every": "0m"}}}, **(config or {})},
            env={"OPENCLAW_OFFLINE_RULES": str(rules_file), "OPENCLAW_ENGINE_POLL_S": "0.2", **(env or {})},
        )  # fmt: skip
        made.append(started)
        return started

    yield make
    for started in made:
        started.stop()
        slow = {roles: round(s, 1) for roles, s in started.stop_seconds.items() if s > 5}
        assert not slow, f"processes slow to stop: {slow}"


@pytest.fixture(autouse=True)
async def _close_thread_connections():
    """The ORM calls of an async test run in asgiref's worker thread; close its
    connection so the test database can be dropped at the end of the run."""
    yield
    from asgiref.sync import sync_to_async
    from django.db import connections

    await sync_to_async(connections.close_all)()

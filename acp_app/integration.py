"""How acp_app plugs into the other apps, without them importing it.

- ``sessions_spawn({runtime: "acp"})`` → :func:`spawn_from_args` (the spawn-runtime
  registry of ``sessions_app.services.subagents``);
- the ``acp.delegates`` maintenance sweep (``cron_app.maintenance``, run by the
  django-q2 ``maintenance_sweep`` task) → :func:`acp_app.services.delegate_sweep`.

:func:`register` runs from ``AcpAppConfig.ready``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def spawn_from_args(*, requester_session_key: str, requester_run_id: str | None, args: dict[str, Any]) -> dict:
    """The ``sessions_spawn`` tool/RPC/REST arguments → :func:`acp_app.services.acp_spawn`."""
    from .services import acp_spawn

    timeout = args.get("runTimeoutSeconds", args.get("timeoutSeconds"))
    return acp_spawn(
        requester_session_key=requester_session_key, requester_run_id=requester_run_id, task=args.get("task") or "",
        agent_id=args.get("agentId"), label=args.get("label"), mode=args.get("mode"), thread=bool(args.get("thread")),
        delegate=bool(args.get("delegate")), cwd=args.get("cwd"), sandbox=args.get("sandbox"),
        sandboxed=bool(args.get("sandboxed")), stream_to=args.get("streamTo"),
        run_timeout_seconds=int(timeout) if timeout is not None else None, resume_session_id=args.get("resumeSessionId"),
    )  # fmt: skip


def delegate_maintenance(now: datetime) -> int:
    """The maintenance sweep: close expired delegates; returns how many were closed."""
    from .services import delegate_sweep

    return len(delegate_sweep(now=now)["closed"])


def register() -> None:
    from cron_app.maintenance import maintenance_sweep
    from sessions_app.services.subagents import register_spawn_runtime

    register_spawn_runtime("acp", spawn_from_args)
    maintenance_sweep("acp.delegates")(delegate_maintenance)

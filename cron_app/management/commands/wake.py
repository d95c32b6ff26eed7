"""Wake a session now: with --text like ``system_event --mode now``; without, a manual
heartbeat ping of the agent (never deferred)."""

from __future__ import annotations

from django.core.management.base import CommandError

from cron_app.services import heartbeat_request

from ..cli import dumps
from .system_event import Command as SystemEventCommand


class Command(SystemEventCommand):
    help = "Wake a session now (--text queues a system event first; without it, a manual heartbeat ping)."
    default_mode = "now"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        text = next(action for action in parser._actions if action.dest == "text")
        text.required = False

    def handle(self, *args, **options):
        if options.get("text"):
            return super().handle(*args, **options)
        if options.get("url"):
            raise CommandError("a remote wake needs --text (the wake RPC requires it)")
        from openclaw_site.config import get_config
        from sessions_app import keys

        key = (options.get("session_key") or "").strip() or None
        agent = (options.get("agent_id") or "").strip() or None
        target = keys.resolve_cron_target(cfg=get_config(), agent_id=agent, session_key=key)
        outcomes = heartbeat_request(
            source="manual", intent="manual", reason="manual", agent_id=target.agent_id,
            session_key=target.session_key if key else None,
        )  # fmt: skip
        rows = [{"agentId": o.agent_id, "status": o.status, "reason": o.reason, "sessionKey": o.session_key,
                 "runId": o.run_id} for o in outcomes]  # fmt: skip
        self.stdout.write(dumps(rows) if options["json"] else "\n".join(f"{r['agentId']}: {r['status']} {r['reason']}".strip() for r in rows))

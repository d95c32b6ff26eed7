"""``openclaw system event`` for this gateway: queue a System: line and wake per mode."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ..cli import add_remote_arguments, call, dumps


class Command(BaseCommand):
    help = (
        "Queue a system event (the `wake` RPC): the next heartbeat of the session sees it as a System: line. "
        "With --session-key, next-heartbeat also wakes that session at once."
    )
    default_mode = "next-heartbeat"

    def add_arguments(self, parser):
        parser.add_argument("--text", required=True, help="The event text.")
        parser.add_argument("--mode", choices=["now", "next-heartbeat"], default=self.default_mode)
        parser.add_argument("--session-key", help="Target session (default: the main session).")
        parser.add_argument("--agent-id", help="Target agent (default: from the key, else the default agent).")
        add_remote_arguments(parser)

    def handle(self, *args, **options):
        params = {"mode": options["mode"], "text": options["text"]}
        for option, name in (("session_key", "sessionKey"), ("agent_id", "agentId")):
            if (options.get(option) or "").strip():  # whitespace-only is omitted, like the real CLI
                params[name] = options[option].strip()
        result = call("wake", params, options)
        if options["json"]:
            self.stdout.write(dumps(result))
        elif not (result or {}).get("ok"):
            raise CommandError("not queued (empty text)")
        else:
            self.stdout.write("ok")

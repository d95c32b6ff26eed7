"""``manage.py cron list|status|add|update|enable|disable|remove|run|runs|tick``: thin
shells over the cron RPC methods (local database, or a remote gateway with --url)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from openclaw_site.config import parse_duration_ms
from openclaw_site.errors import GatewayError

from ..cli import add_remote_arguments, call, dumps


def _schedule(options: dict[str, Any]) -> dict[str, Any] | None:
    if options.get("at"):
        return {"kind": "at", "at": options["at"]}
    if options.get("every"):
        return {"kind": "every", "everyMs": parse_duration_ms(options["every"], key="--every")}
    if options.get("cron"):
        schedule = {"kind": "cron", "expr": options["cron"]}
        if options.get("tz"):
            schedule["tz"] = options["tz"]
        if options.get("stagger_ms") is not None:
            schedule["staggerMs"] = options["stagger_ms"]
        return schedule
    return None


def _payload(options: dict[str, Any]) -> dict[str, Any] | None:
    if options.get("system_event"):
        return {"kind": "systemEvent", "text": options["system_event"]}
    if options.get("message"):
        payload = {"kind": "agentTurn", "message": options["message"]}
        if options.get("timeout_seconds") is not None:
            payload["timeoutSeconds"] = options["timeout_seconds"]
        return payload
    return None


def _delivery(options: dict[str, Any]) -> dict[str, Any] | None:
    if options.get("webhook"):
        return {"mode": "webhook", "to": options["webhook"]}
    if options.get("announce"):
        return {"mode": "announce"}
    if options.get("no_deliver"):
        return {"mode": "none"}
    return None


_FIELDS = (("name", "name"), ("description", "description"), ("agent_id", "agentId"), ("session_key", "sessionKey"),
           ("session_target", "sessionTarget"), ("wake_mode", "wakeMode"), ("catch_up", "catchUp"))  # fmt: skip


def job_fields(options: dict[str, Any]) -> dict[str, Any]:
    """The job shape the options describe (only what was given)."""
    data = {wire: options[name] for name, wire in _FIELDS if options.get(name) is not None}
    for wire, value in (("schedule", _schedule(options)), ("payload", _payload(options)), ("delivery", _delivery(options))):
        if value is not None:
            data[wire] = value
    if options.get("delete_after_run") is not None:
        data["deleteAfterRun"] = options["delete_after_run"]
    if options.get("disabled"):
        data["enabled"] = False
    return data


def _job_arguments(parser) -> None:
    parser.add_argument("--name")
    parser.add_argument("--description")
    parser.add_argument("--at", help="One-shot ISO-8601 time (no offset = UTC).")
    parser.add_argument("--every", help='Interval such as "10m", "1h" (bare number = minutes).')
    parser.add_argument("--cron", help="5- or 6-field cron expression.")
    parser.add_argument("--tz", help="IANA time zone of --cron.")
    parser.add_argument("--stagger-ms", type=int)
    parser.add_argument("--system-event", help="Main-session job: the System: line to queue.")
    parser.add_argument("--message", help="Isolated job: the agent turn's message.")
    parser.add_argument("--timeout-seconds", type=int)
    parser.add_argument("--session-target", choices=["main", "isolated"])
    parser.add_argument("--wake-mode", choices=["now", "next-heartbeat"])
    parser.add_argument("--catch-up", choices=["skip", "once", "all"])
    parser.add_argument("--agent-id")
    parser.add_argument("--session-key")
    parser.add_argument("--announce", action="store_true")
    parser.add_argument("--no-deliver", action="store_true")
    parser.add_argument("--webhook", help="POST finished runs to this http(s) URL.")
    parser.add_argument("--delete-after-run", action="store_true", default=None)
    parser.add_argument("--keep-after-run", dest="delete_after_run", action="store_false")
    parser.add_argument("--disabled", action="store_true")


class Command(BaseCommand):
    help = "Manage cron jobs: list, status, add, update, enable, disable, remove, run, runs, tick."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list")
        listing.add_argument("--all", action="store_true", help="Include disabled jobs.")
        sub.add_parser("status")
        _job_arguments(sub.add_parser("add"))
        update = sub.add_parser("update")
        update.add_argument("id")
        _job_arguments(update)
        for name in ("enable", "disable", "remove"):
            sub.add_parser(name).add_argument("id")
        run = sub.add_parser("run")
        run.add_argument("id")
        run.add_argument("--due", action="store_true", help="Only when due (default: force).")
        runs = sub.add_parser("runs")
        runs.add_argument("id", nargs="?")
        runs.add_argument("--limit", type=int, default=20)
        sub.add_parser("tick", help="Fire every due slot now (local database only).")
        for action in sub.choices.values():
            add_remote_arguments(action)

    def handle(self, *args, action: str, **options):
        try:
            result = getattr(self, f"do_{action}")(options)
        except GatewayError as exc:  # a bad --every, before any call
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(dumps(result) if options.get("json") or not isinstance(result, str) else result)

    def do_list(self, options):
        return call("cron.list", {"includeDisabled": options["all"], "limit": 200, "offset": 0}, options)

    def do_status(self, options):
        return call("cron.status", {}, options)

    def do_add(self, options):
        return call("cron.add", job_fields(options), options)

    def do_update(self, options):
        return call("cron.update", {"id": options["id"], "patch": job_fields(options)}, options)

    def do_enable(self, options):
        return call("cron.update", {"id": options["id"], "patch": {"enabled": True}}, options)

    def do_disable(self, options):
        return call("cron.update", {"id": options["id"], "patch": {"enabled": False}}, options)

    def do_remove(self, options):
        return call("cron.remove", {"id": options["id"]}, options)

    def do_run(self, options):
        return call("cron.run", {"id": options["id"], "mode": "due" if options["due"] else "force"}, options)

    def do_runs(self, options):
        scope = {"id": options["id"]} if options["id"] else {"scope": "all"}
        return call("cron.runs", {**scope, "limit": options["limit"]}, options)

    def do_tick(self, options):
        from cron_app.services import cron_tick

        return f"{len(cron_tick())} run(s) started"

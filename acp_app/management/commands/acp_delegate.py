"""``manage.py acp_delegate list | status | close | sweep``: hub-delegated ACP workers.

A thin shell over the ``acp.delegate.*`` RPC methods (the same services as the
WebSocket, REST, the admin and ``/acp delegate``). ``--owner`` scopes to one owner
session's workers (addressed by label); without it a worker is addressed by ``--key``.
``--json`` prints the payload as JSON.
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from openclaw_site.errors import GatewayError
from sessions_app.rpc import RpcContext, call_sync

from ...selectors import iso


class Command(BaseCommand):
    help = "List, inspect, close or sweep hub-delegated ACP workers."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=("list", "status", "close", "sweep"))
        parser.add_argument("label", nargs="?", help="the worker's label (with --owner)")
        parser.add_argument("--owner", help="owner session key (its workers only)")
        parser.add_argument("--key", help="the worker's session key (instead of --owner + label)")
        parser.add_argument("--json", action="store_true", help="print the RPC payload as JSON")

    def handle(self, *args, action: str, label: str | None, owner: str | None, key: str | None, **options):
        params = {name: value for name, value in (("sessionKey", owner), ("label", label), ("key", key)) if value}
        try:
            payload = call_sync(RpcContext(conn_id="cli", client={"id": "manage.py"}), f"acp.delegate.{action}", params)
        except GatewayError as error:
            raise CommandError(f"{error.code}: {error.message}") from error
        if options["json"]:
            self.stdout.write(json.dumps(payload, indent=2, default=str))
            return
        self.stdout.write(getattr(self, f"_text_{action}")(payload))

    def _text_list(self, payload: dict) -> str:
        lines = [_line(row) for row in payload["delegates"]]
        return "\n".join(lines) if lines else "(no hub-delegated workers)"

    def _text_status(self, payload: dict) -> str:
        row = payload["delegate"]
        return "\n".join(f"{name}: {row[field]}" for name, field in (
            ("Label", "label"), ("Key", "sessionKey"), ("Agent", "agent"), ("State", "state"), ("Owner", "owner"),
        )) + f"\nIdle expires: {_iso(row['idleExpiresAt'])}\nMax age expires: {_iso(row['maxAgeExpiresAt'])}"  # fmt: skip

    def _text_close(self, payload: dict) -> str:
        return f'Closed hub-delegated session "{payload["label"]}" ({payload["sessionKey"]}): {payload["runtimeNotice"]}'

    def _text_sweep(self, payload: dict) -> str:
        closed = [f"closed {row['label']} ({row['sessionKey']}): {row['reason']}" for row in payload["closed"]]
        failed = [f"FAILED {row['sessionKey']}: {row['error']}" for row in payload["failed"]]
        return "\n".join(closed + failed) or "nothing expired"


def _iso(ms: int | None) -> str:
    from datetime import datetime, timezone

    return iso(datetime.fromtimestamp(ms / 1000, tz=timezone.utc)) if ms else "never"


def _line(row: dict) -> str:
    return (f"{row['label'] or row['agent']} ({row['agent']}, {row['state']}) -> {row['sessionKey']} owner={row['owner']}"
            f" idle-expires:{_iso(row['idleExpiresAt'])} max-age-expires:{_iso(row['maxAgeExpiresAt'])}")  # fmt: skip

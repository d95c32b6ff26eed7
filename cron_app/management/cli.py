"""Shared plumbing of the ``system_event``, ``wake`` and ``cron`` commands: run one RPC
method on the local database (through ``sessions_app.rpc.call_sync``, the same schema
and service as the WebSocket) or on a remote gateway (``--url``/``--token``)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError

from openclaw_site.errors import GatewayError
from sessions_app.rpc import RpcContext, call_sync, get_method

from ..remote import RemoteCallError, remote_call


def add_remote_arguments(parser) -> None:
    parser.add_argument("--url", help="Gateway WebSocket URL (ws://host:port/ws); default: the local database.")
    parser.add_argument("--token", help="Gateway token for --url.")
    parser.add_argument("--password", help="Gateway password for --url.")
    parser.add_argument("--timeout", type=float, default=30.0, help="Seconds to wait for the gateway (--url).")
    parser.add_argument("--json", action="store_true", help="Print the raw JSON result.")


def call(method: str, params: dict[str, Any], options: dict[str, Any]) -> Any:
    """Run ``method``; a gateway error becomes a CommandError ``CODE: message``."""
    scope = get_method(method).scope
    try:
        if options.get("url"):
            return remote_call(
                url=options["url"], method=method, params=params, scope=scope, token=options.get("token"),
                password=options.get("password"), timeout=options.get("timeout") or 30.0,
            )  # fmt: skip
        return call_sync(RpcContext(conn_id="cli", scopes=frozenset({scope}), client={"id": "cli"}), method, params)
    except (GatewayError, RemoteCallError) as exc:
        raise CommandError(f"{exc.code}: {exc.message}") from exc


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)

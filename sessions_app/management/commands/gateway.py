"""Run the gateway: the ASGI server (daphne) for HTTP and WebSocket.

The run engine and the django-q2 cluster join this command in the run-engine issue.
"""

from __future__ import annotations

import logging

from django.core.management.base import BaseCommand

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Start the gateway (HTTP + WebSocket on one port)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=18789)

    def handle(self, *args, host: str, port: int, **options):
        from daphne.endpoints import build_endpoint_description_strings
        from daphne.server import Server

        from openclaw_site.asgi import application

        self.stdout.write(f"gateway listening on http://{host}:{port}/ (WebSocket ws://{host}:{port}/ws)")
        Server(
            application=application,
            endpoints=build_endpoint_description_strings(host=host, port=port),
            websocket_timeout=-1,
            websocket_connect_timeout=20,
            signal_handlers=True,
        ).run()

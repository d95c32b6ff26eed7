"""ASGI entry point: HTTP through Django, WebSocket upgrades on ``/ws`` and ``/`` to the gateway."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "openclaw_site.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import CookieMiddleware, SessionMiddleware  # noqa: E402
from channels.auth import AuthMiddleware  # noqa: E402

from sessions_app.routing import websocket_urlpatterns  # noqa: E402
from openclaw_site import daphne_compat  # noqa: E402

daphne_compat.install()  # protocol close codes (1008, 1002, 1009) reach the client

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": CookieMiddleware(SessionMiddleware(AuthMiddleware(URLRouter(websocket_urlpatterns)))),
    }
)

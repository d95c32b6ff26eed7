"""REST authentication with the gateway token (or password) as a bearer credential."""

from __future__ import annotations

import hmac

from rest_framework import authentication, exceptions


class GatewayPrincipal:
    """The caller authenticated by the shared gateway secret (an operator with every scope)."""

    is_authenticated = True
    is_active = True
    is_staff = True
    is_superuser = False
    pk = None
    id = None
    username = "gateway-token"

    def __str__(self) -> str:
        return self.username


class GatewayTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        from openclaw_site.config import get_config

        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, credential = header.partition(" ")
        if scheme.lower() not in ("bearer", "token") or not credential:
            return None
        auth = get_config().auth
        secret = auth.token if auth.mode == "token" else auth.password if auth.mode == "password" else ""
        if auth.mode == "none":
            return (GatewayPrincipal(), None)
        if not secret or not hmac.compare_digest(credential.strip().encode(), secret.encode()):
            raise exceptions.AuthenticationFailed("unauthorized: gateway token mismatch")
        return (GatewayPrincipal(), None)

    def authenticate_header(self, request) -> str:
        return self.keyword

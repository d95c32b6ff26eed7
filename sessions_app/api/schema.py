"""OpenAPI extensions: how the docs describe the gateway's bearer-token auth."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class GatewayTokenScheme(OpenApiAuthenticationExtension):
    target_class = "sessions_app.api.auth.GatewayTokenAuthentication"
    name = "gatewayToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The gateway token (`gateway.auth.token` / OPENCLAW_GATEWAY_TOKEN), or the password in password mode.",
        }

"""The OpenClaw gateway protocol, version 4: frames, connect params, hello-ok.

See ``docs/protocol.md`` and ``reference/openclaw-protocol.md``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from typing import Any

from django.conf import settings

from openclaw_site.errors import GatewayError, InvalidParamsError, InvalidRequestError

from . import schema as s

PROTOCOL_VERSION = 4
SERVER_VERSION = "2026.9.6-django.1"
OPERATOR_SCOPES = ["operator.admin", "operator.read", "operator.write"]

CLIENT_IDS = [
    "webchat-ui", "openclaw-control-ui", "openclaw-browser-copilot", "openclaw-tui", "webchat", "cli",
    "gateway-client", "openclaw-macos", "openclaw-linux", "openclaw-ios", "openclaw-watchos",
    "openclaw-android", "node-host", "openclaw-worker", "test", "fingerprint", "openclaw-probe",
]  # fmt: skip
CLIENT_MODES = ["webchat", "cli", "ui", "backend", "node", "worker", "probe", "test"]

EVENTS = [
    "connect.challenge", "tick", "shutdown", "health", "heartbeat", "chat", "agent",
    "sessions.changed", "session.message", "cron",
]  # fmt: skip

REQUEST_SCHEMA = s.obj(
    {
        "type": {"const": "req"},
        "id": s.string(min_length=1),
        "method": s.string(min_length=1),
        "params": s.ANY,
        "traceparent": s.string(max_length=128),
        "expectedProfileId": s.string(),
    },
    required=("type", "id", "method"),
)

CONNECT_SCHEMA = s.obj(
    {
        "minProtocol": s.integer(minimum=0),
        "maxProtocol": s.integer(minimum=0),
        "client": s.obj(
            {
                "id": s.string(enum=CLIENT_IDS),
                "version": s.string(),
                "platform": s.string(),
                "mode": s.string(enum=CLIENT_MODES),
                "displayName": s.string(),
                "buildId": s.string(),
                "deviceFamily": s.string(),
                "modelIdentifier": s.string(),
                "timeZone": s.string(),
                "instanceId": s.string(),
            },
            required=("id", "version", "platform", "mode"),
        ),
        "role": s.string(),
        "scopes": s.array(s.string()),
        "caps": s.array(),
        "commands": s.array(),
        "permissions": {"type": "object"},
        "pathEnv": s.string(),
        "computerUse": s.ANY,
        "workerRuns": {"type": "object"},
        "modelCatalog": s.ANY,
        "device": s.obj(
            {
                "id": s.string(),
                "publicKey": s.string(),
                "signature": s.string(),
                "signedAt": s.integer(),
                "nonce": s.string(),
            },
            required=("id", "publicKey", "signature", "signedAt"),
        ),
        "auth": s.obj(
            {
                "token": s.string(),
                "bootstrapToken": s.string(),
                "deviceToken": s.string(),
                "password": s.string(),
                "approvalRuntimeToken": s.string(),
                "agentRuntimeIdentityToken": s.string(),
            }
        ),
        "locale": s.string(),
        "userAgent": s.string(),
    },
    required=("minProtocol", "maxProtocol", "client"),
)


class ProtocolMismatchError(InvalidRequestError):
    close_code = 1002

    def __init__(self, client_min: int, client_max: int) -> None:
        super().__init__(
            "protocol mismatch",
            details={
                "code": "PROTOCOL_MISMATCH",
                "clientMinProtocol": client_min,
                "clientMaxProtocol": client_max,
                "expectedProtocol": PROTOCOL_VERSION,
                "minimumProbeProtocol": 3,
            },
        )


class AuthMismatchError(InvalidRequestError):
    close_code = 1008

    def __init__(self, kind: str = "token") -> None:
        if kind == "password":
            message = "unauthorized: gateway password mismatch (use this gateway's gateway.auth.password)"
            details = {"code": "AUTH_PASSWORD_MISMATCH", "authReason": "password_mismatch"}
        else:
            message = (
                "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)"
            )
            details = {"code": "AUTH_TOKEN_MISMATCH", "authReason": "token_mismatch"}
        details |= {"canRetryWithDeviceToken": False, "recommendedNextStep": "update_auth_credentials"}
        super().__init__(message, details=details)


class DeviceSignatureError(InvalidRequestError):
    close_code = 1008

    def __init__(self, reason: str) -> None:
        super().__init__(f"device signature invalid: {reason}", details={"code": "DEVICE_AUTH_INVALID"})


def validate_connect(params: Any) -> dict[str, Any]:
    errors = s.validate(CONNECT_SCHEMA, params if params is not None else {})
    if errors:
        raise InvalidParamsError("connect", "; ".join(errors))
    if not (params["minProtocol"] <= PROTOCOL_VERSION <= params["maxProtocol"]):
        raise ProtocolMismatchError(params["minProtocol"], params["maxProtocol"])
    return params


class OriginNotAllowedError(InvalidRequestError):
    close_code = 1008

    def __init__(self, origin: str | None) -> None:
        super().__init__(
            f"origin not allowed: {origin or '(none)'} (a browser session must come from this gateway's pages)",
            details={"code": "ORIGIN_NOT_ALLOWED", "origin": origin},
        )


def authenticate(params: dict[str, Any], *, user=None, origin: str | None = None, host: str | None = None) -> str:
    """Check the shared token/password; returns the auth method used.

    A staff Django session (the browser's cookie) counts only from an allowed ``Origin``
    (:func:`origin_allowed`), so another site's page cannot ride the operator's cookie;
    from elsewhere the connection needs the token/password like any client.
    """
    from openclaw_site.config import get_config

    auth = get_config().auth
    given = params.get("auth") or {}
    if user is not None and getattr(user, "is_authenticated", False) and getattr(user, "is_staff", False):
        if origin_allowed(origin, host=host):
            return "session"
        if auth.mode != "none" and not (given.get("token") or given.get("password")):
            raise OriginNotAllowedError(origin)
    if auth.mode == "none":
        return "none"
    if auth.mode == "password":
        if not _same(given.get("password"), auth.password):
            raise AuthMismatchError("password")
        return "password"
    if not _same(given.get("token"), auth.token):
        raise AuthMismatchError("token")
    return "token"


def origin_allowed(origin: str | None, *, host: str | None = None) -> bool:
    """Channels' ``AllowedHostsOriginValidator`` rule: the Origin's host is in
    ``ALLOWED_HOSTS`` (or the origin in ``CSRF_TRUSTED_ORIGINS``, or equal to the request's
    own ``Host``); no Origin at all is refused."""
    from urllib.parse import urlsplit

    from django.http.request import validate_host

    if not origin or origin == "null":
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if origin in settings.CSRF_TRUSTED_ORIGINS or (host and parts.netloc == host):
        return True
    allowed = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    hostname = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return validate_host(hostname, allowed)


def _same(given: Any, expected: str) -> bool:
    if not isinstance(given, str) or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def granted_scopes(params: dict[str, Any]) -> list[str]:
    requested = params.get("scopes")
    if requested is None:
        return list(OPERATOR_SCOPES)
    return [scope for scope in dict.fromkeys(requested) if isinstance(scope, str)]


def verify_device(params: dict[str, Any], *, nonce: str, challenge_ts: int) -> bool:
    """Verify the optional Ed25519 device signature over the v3 (or v2) payload."""
    device = params.get("device")
    if not device:
        return False
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        raw_key = _b64url(device["publicKey"])
        signature = _b64url(device["signature"])
        public_key = Ed25519PublicKey.from_public_bytes(raw_key)
    except (ValueError, KeyError) as exc:
        raise DeviceSignatureError("malformed key or signature") from exc
    if hashlib.sha256(raw_key).hexdigest() != device["id"]:
        raise DeviceSignatureError("device id does not match public key")
    if device.get("nonce") not in (None, nonce):
        raise DeviceSignatureError("nonce mismatch")
    for payload in _device_payloads(params, nonce=nonce):
        try:
            public_key.verify(signature, payload.encode())
            return True
        except InvalidSignature:
            continue
    raise DeviceSignatureError("signature does not verify")


def _device_payloads(params: dict[str, Any], *, nonce: str) -> list[str]:
    device, client = params["device"], params["client"]
    token = (params.get("auth") or {}).get("token") or ""
    base = [
        device["id"], client["id"], client["mode"], params.get("role", "operator"),
        ",".join(params.get("scopes") or []), str(device["signedAt"]), token, nonce,
    ]  # fmt: skip
    v3 = "|".join(["v3", *base, client["platform"].lower(), (client.get("deviceFamily") or "").lower()])
    v2 = "|".join(["v2", *base])
    return [v3, v2]


def _b64url(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def hello_ok(*, conn_id: str, auth_method: str, role: str, scopes: list[str], methods: list[str]) -> dict[str, Any]:
    from openclaw_site.config import get_config

    cfg = get_config()
    default_agent = cfg.default_agent_id()
    return {
        "type": "hello-ok",
        "protocol": PROTOCOL_VERSION,
        "server": {"version": SERVER_VERSION, "connId": conn_id, "bootId": BOOT_ID},
        "features": {"methods": methods, "events": list(EVENTS), "capabilities": []},
        "snapshot": {
            "sessionDefaults": {
                "defaultAgentId": default_agent,
                "mainKey": cfg.main_key,
                "mainSessionKey": cfg.main_session_key(),
                "scope": cfg.scope,
                "modelConfigured": True,
            },
            "configPath": cfg.path,
            "stateDir": str(settings.OPENCLAW_STATE_DIR),
            "authMode": cfg.auth.mode,
            "appliedConfigHash": cfg.hash(),
        },
        "auth": {"method": auth_method, "role": role, "scopes": scopes},
        "policy": {
            "maxPayload": settings.OPENCLAW_MAX_PAYLOAD,
            "maxBufferedBytes": settings.OPENCLAW_MAX_BUFFERED_BYTES,
            "tickIntervalMs": settings.OPENCLAW_TICK_INTERVAL_MS,
        },
    }


BOOT_ID = str(uuid.uuid4())


def response(frame_id: str, payload: Any) -> dict[str, Any]:
    return {"type": "res", "id": frame_id, "ok": True, "payload": payload}


def error_response(frame_id: str, error: GatewayError) -> dict[str, Any]:
    return {"type": "res", "id": frame_id, "ok": False, "error": error.to_shape()}

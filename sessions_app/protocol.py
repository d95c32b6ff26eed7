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


def authenticate(params: dict[str, Any], *, user=None) -> str:
    """Check the shared token/password; returns the auth method used."""
    from openclaw_site.config import get_config

    auth = get_config().auth
    if user is not None and getattr(user, "is_authenticated", False) and getattr(user, "is_staff", False):
        return "session"
    given = params.get("auth") or {}
    if auth.mode == "none":
        return "none"
    if auth.mode == "password":
        if not _same(given.get("password"), auth.password):
            raise AuthMismatchError("password")
        return "password"
    if not _same(given.get("token"), auth.token):
        raise AuthMismatchError("token")
    return "token"


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

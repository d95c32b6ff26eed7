"""RPC methods of hub-delegated ACP workers: ``acp.delegate.list|status|close|sweep``.

With ``sessionKey`` a method acts for that owner session (only its own workers, by
label), as ``/acp delegate …`` does in its chat; without it an operator sees every
owner's workers and addresses one by its worker ``key``. Each calls one selector or
service (``acp_app.selectors`` / ``acp_app.services``), like the REST views, the
``acp_delegate`` command and the admin.
"""

from __future__ import annotations

from django.utils import timezone

from openclaw_site.errors import InvalidParamsError
from sessions_app import schema as s
from sessions_app.rpc import ADMIN, READ, WRITE, RpcContext, rpc_method

from . import selectors, services
from .exceptions import DelegateNotFoundError

KEY = s.string(min_length=1)
LABEL = s.string(min_length=1, max_length=64)
TARGET = s.obj({"sessionKey": KEY, "label": LABEL, "key": KEY})


def _ms_now() -> int:
    return int(timezone.now().timestamp() * 1000)


@rpc_method("acp.delegate.list", scope=READ, schema=s.obj({"sessionKey": KEY}))
def delegate_list(ctx: RpcContext, params: dict) -> dict:
    owner = params.get("sessionKey")
    rows = (selectors.delegate_list_for_owner(owner_session_key=owner) if owner else selectors.delegate_list_all())
    payload = {"ts": _ms_now(), "count": len(rows), "delegates": [selectors.delegate_row(acp) for acp in rows]}
    if owner:
        payload["owner"] = selectors.owner_key_of(owner)
    return payload


def _target(method: str, params: dict):
    """The worker a status/close call names: ``sessionKey`` + ``label`` (owner scope) or ``key``."""
    if params.get("key") and not params.get("label"):
        acp = selectors.delegate_get_by_key(session_key=params["key"])
        if params.get("sessionKey") and acp.owner_session_key != selectors.owner_key_of(params["sessionKey"]):
            raise DelegateNotFoundError(acp.session.key, owner=params["sessionKey"])
        return acp
    if params.get("sessionKey") and params.get("label"):
        return selectors.delegate_get(owner_session_key=params["sessionKey"], label=params["label"])
    raise InvalidParamsError(method, "give sessionKey and label (the owner's view) or key (the worker's session key)")


@rpc_method("acp.delegate.status", scope=READ, schema=TARGET)
def delegate_status(ctx: RpcContext, params: dict) -> dict:
    return {"ts": _ms_now(), "delegate": selectors.delegate_row(_target("acp.delegate.status", params))}


@rpc_method("acp.delegate.close", scope=WRITE, schema=TARGET)
def delegate_close(ctx: RpcContext, params: dict) -> dict:
    acp = _target("acp.delegate.close", params)
    return services.delegate_close(session_key=acp.session.key, reason=services.MANUAL_CLOSE)


@rpc_method("acp.delegate.sweep", scope=ADMIN, schema=s.obj({}))
def delegate_sweep(ctx: RpcContext, params: dict) -> dict:
    return services.delegate_sweep()

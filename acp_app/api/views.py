"""REST doors onto hub-delegated ACP workers: the ``acp.delegate.*`` RPC methods.

``GET delegates`` (``?sessionKey=`` for one owner's workers), ``GET delegates/status``
(``?sessionKey=&label=`` or ``?key=``), ``POST delegates/close`` (the same names in the
body) and ``POST delegates/sweep``. Each view calls its RPC method through
``call_sync``: the same schema, scope and service as the WebSocket.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from sessions_app.api.views import ERRORS, GatewayApi, body_params, rpc

OWNER_PARAM = OpenApiParameter("sessionKey", str, description="Owner session: only its workers, addressed by label.")
LABEL_PARAM = OpenApiParameter("label", str, description="The worker's label (with sessionKey).")
WORKER_PARAM = OpenApiParameter("key", str, description="The worker's own session key (operators).")


def _given(request: Request, *names: str) -> dict:
    return {name: request.query_params[name] for name in names if request.query_params.get(name)}


class DelegateListApi(GatewayApi):
    @extend_schema(
        operation_id="acp_delegate_list", tags=["delegates"], parameters=[OWNER_PARAM],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
        description="Open hub-delegated workers: one owner's, or every owner's (label, harness, state, expiry).",
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        return Response(rpc(request, "acp.delegate.list", _given(request, "sessionKey")))


class DelegateStatusApi(GatewayApi):
    @extend_schema(
        operation_id="acp_delegate_status", tags=["delegates"], parameters=[OWNER_PARAM, LABEL_PARAM, WORKER_PARAM],
        responses={200: OpenApiTypes.OBJECT, **ERRORS}, description="One worker by owner + label, or by its key.",
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        return Response(rpc(request, "acp.delegate.status", _given(request, "sessionKey", "label", "key")))


class DelegateCloseApi(GatewayApi):
    @extend_schema(
        operation_id="acp_delegate_close", tags=["delegates"], request=OpenApiTypes.OBJECT,
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
        description="Close one worker ({sessionKey, label} or {key}): identity cleared first, then the harness.",
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        return Response(rpc(request, "acp.delegate.close", body_params(request)))


class DelegateSweepApi(GatewayApi):
    @extend_schema(
        operation_id="acp_delegate_sweep", tags=["delegates"], request=None,
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
        description="Close every worker past acp.delegate idle or max-age limits now.",
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        return Response(rpc(request, "acp.delegate.sweep", {}))

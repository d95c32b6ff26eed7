"""REST doors onto inter-session delivery.

- ``POST /api/v1/sessions/send``: the ``sessions_send`` tool (``sessions.sendTool``):
  body ``{sessionKey | label (+agentId) | agentId, message, timeoutSeconds?,
  requesterSessionKey?, idempotencyKey?}``; answers the tool's result (200 for ok,
  202 for accepted, 504 for timeout, 502 for a target run that failed) and the error
  envelope for a send that was refused (403 visibility, 400 resolution / send policy).
- ``GET /api/v1/deliveries?state=…&session=…&limit=…``: deliveries newest first.
- ``GET /api/v1/deliveries/<id>``: one delivery (state, attempts, consumer, reply).
- ``POST /api/v1/deliveries/<id>/retry``: put a failed or expired delivery back.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from ..rpc import dispatch
from .views import ERRORS, GatewayApi, body_params, rpc, rpc_context

HTTP_FOR_STATUS = {
    "ok": status.HTTP_200_OK,
    "accepted": status.HTTP_202_ACCEPTED,
    "timeout": status.HTTP_504_GATEWAY_TIMEOUT,
    "error": status.HTTP_502_BAD_GATEWAY,
}
ID_PARAM = OpenApiParameter("id", str, OpenApiParameter.PATH, description="Delivery id.")


class SessionSendApi(GatewayApi):
    @extend_schema(
        operation_id="sessions_send", tags=["deliveries"], request=OpenApiTypes.OBJECT,
        responses={200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT, **ERRORS},
        description="Send a message into a session (the sessions_send tool); waits up to timeoutSeconds.",
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        # The send waits on the event loop; async_to_sync keeps thread-sensitive ORM calls
        # on this request's thread (asyncio.run here would deadlock under ASGI).
        result = async_to_sync(dispatch)(rpc_context(request), "sessions.sendTool", body_params(request))
        return Response(result, status=HTTP_FOR_STATUS.get(result.get("status"), status.HTTP_200_OK))


class DeliveryListApi(GatewayApi):
    @extend_schema(
        operation_id="deliveries_list", tags=["deliveries"], responses={200: OpenApiTypes.OBJECT, **ERRORS},
        parameters=[
            OpenApiParameter("state", str, enum=["pending", "delivered", "consumed", "failed", "expired"]),
            OpenApiParameter("session", str, description="A session key on either end."),
            OpenApiParameter("limit", int, description="At most this many (100)."),
        ],
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        params = {name: request.query_params[name] for name in ("state", "session") if request.query_params.get(name)}
        if request.query_params.get("limit", "").isdigit():
            params["limit"] = int(request.query_params["limit"])
        return Response(rpc(request, "deliveries.list", params))


class DeliveryDetailApi(GatewayApi):
    @extend_schema(
        operation_id="deliveries_get", tags=["deliveries"], parameters=[ID_PARAM],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )  # fmt: skip
    def get(self, request: Request, delivery_id: str) -> Response:
        return Response(rpc(request, "deliveries.get", {"id": delivery_id}))


class DeliveryRetryApi(GatewayApi):
    @extend_schema(
        operation_id="deliveries_retry", tags=["deliveries"], parameters=[ID_PARAM], request=None,
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
    )  # fmt: skip
    def post(self, request: Request, delivery_id: str) -> Response:
        return Response(rpc(request, "deliveries.retry", {"id": delivery_id}))


# Included by ``api/urls.py`` before the catch-all ``sessions/<path:key>`` route.
urlpatterns = [
    path("sessions/send", SessionSendApi.as_view(), name="api-sessions-send"),
    path("deliveries", DeliveryListApi.as_view(), name="api-deliveries"),
    path("deliveries/<str:delivery_id>/retry", DeliveryRetryApi.as_view(), name="api-delivery-retry"),
    path("deliveries/<str:delivery_id>", DeliveryDetailApi.as_view(), name="api-delivery"),
]

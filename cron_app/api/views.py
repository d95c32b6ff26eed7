"""REST doors onto wake and system events: one APIView per operation.

``POST /api/v1/wake`` and ``POST /api/v1/system-events`` call the ``wake`` and
``system-event`` RPC methods (same schema, scope and service as the WebSocket);
``GET /api/v1/sessions/<key>/system-events`` lists a session's queued events.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from sessions_app.api.views import ERRORS, GatewayApi, body_params, rpc
from sessions_app.selectors import canonical_key
from sessions_app.services.system_events import system_event_list

from . import serializers as s

KEY_PARAM = OpenApiParameter("key", str, OpenApiParameter.PATH, description="Session key (colons allowed).")


class WakeApi(GatewayApi):
    @extend_schema(
        operation_id="wake", tags=["wake"], request=s.WakeInput, responses={200: s.OkOutput, **ERRORS},
        description="Queue a System: line and wake its session (the `wake` RPC).",
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        return Response(rpc(request, "wake", body_params(request)))


class SystemEventCreateApi(GatewayApi):
    @extend_schema(
        operation_id="system_events_create", tags=["wake"], request=s.SystemEventInput,
        responses={200: s.SystemEventPostOutput, **ERRORS},
        description="Queue a system event (the admin `system-event` RPC); `wake: true` wakes the session now.",
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        return Response(rpc(request, "system-event", body_params(request)))


class SessionSystemEventListApi(GatewayApi):
    @extend_schema(
        operation_id="session_system_events", tags=["wake"], parameters=[KEY_PARAM, s.SystemEventListQuery],
        responses={200: s.SystemEventListOutput, **ERRORS},
    )  # fmt: skip
    def get(self, request: Request, key: str) -> Response:
        query = s.SystemEventListQuery(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        canonical = canonical_key(key)
        events = system_event_list(session_key=canonical, include_consumed=query.validated_data["includeConsumed"])
        return Response({"sessionKey": canonical, "events": [s.system_event_row(event) for event in events]})

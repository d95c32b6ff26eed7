"""REST doors onto sub-agents: spawn one for a session, list a session's sub-agents.

``POST /api/v1/sessions/<key>/spawn`` takes the ``sessions_spawn`` arguments as its body
and calls the ``subagents.spawn`` RPC method (the tool's service). An accepted spawn
answers 202, a refused one 403 (``forbidden``) or 400 (``error``), always with the
tool's result body ``{status, childSessionKey?, runId?, note?, error?}``.
``GET /api/v1/sessions/<key>/subagents`` is ``subagents.list``.
"""

from __future__ import annotations

from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from .views import ERRORS, KEY_PARAM, GatewayApi, body_params, rpc

HTTP_FOR_STATUS = {"accepted": status.HTTP_202_ACCEPTED, "forbidden": status.HTTP_403_FORBIDDEN}


class SessionSpawnApi(GatewayApi):
    @extend_schema(
        operation_id="sessions_spawn", tags=["subagents"], parameters=[KEY_PARAM], request=OpenApiTypes.OBJECT,
        responses={202: OpenApiTypes.OBJECT, **ERRORS},
        description="Spawn a sub-agent for the session (the sessions_spawn tool's arguments as the body).",
    )  # fmt: skip
    def post(self, request: Request, key: str) -> Response:
        result = rpc(request, "subagents.spawn", {**body_params(request), "sessionKey": key})
        return Response(result, status=HTTP_FOR_STATUS.get(result.get("status"), status.HTTP_400_BAD_REQUEST))


class SessionSubagentListApi(GatewayApi):
    @extend_schema(
        operation_id="subagents_list", tags=["subagents"], responses={200: OpenApiTypes.OBJECT, **ERRORS},
        parameters=[KEY_PARAM, OpenApiParameter("recentMinutes", int, description="Window of ended runs (30).")],
    )  # fmt: skip
    def get(self, request: Request, key: str) -> Response:
        params = {"sessionKey": key}
        if request.query_params.get("recentMinutes", "").isdigit():
            params["recentMinutes"] = int(request.query_params["recentMinutes"])
        return Response(rpc(request, "subagents.list", params))


# Included by ``api/urls.py`` before the catch-all ``sessions/<path:key>`` route.
urlpatterns = [
    path("sessions/<path:key>/spawn", SessionSpawnApi.as_view(), name="api-session-spawn"),
    path("sessions/<path:key>/subagents", SessionSubagentListApi.as_view(), name="api-session-subagents"),
]

"""REST doors onto the gateway's RPC methods: one APIView per operation.

Each view turns the URL, query string and body into the method's params and calls the
method through :func:`sessions_app.rpc.call_sync`, the same schema check, scope check
and service the WebSocket uses. Payloads leave as the RPC returns them; errors leave
as the gateway envelope (``openclaw_site.errors.drf_exception_handler``).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from openclaw_site.errors import InvalidRequestError

from ..rpc import ADMIN, RpcContext, call_sync
from . import schema as _schema  # noqa: F401  (registers the bearer-token auth in the OpenAPI doc)
from . import serializers as s
from .permissions import IsOperator

ERRORS = {code: s.ErrorEnvelopeOutput for code in (400, 401, 403, 404, 409, 503)}
KEY_PARAM = OpenApiParameter("key", str, OpenApiParameter.PATH, description="Session key (colons allowed).")


def rpc_context(request: Request) -> RpcContext:
    """An authenticated REST caller is an operator with every scope (like the gateway token)."""
    return RpcContext(
        conn_id="rest", scopes=frozenset({ADMIN}), client={"id": "rest"}, user_id=getattr(request.user, "pk", None)
    )


def rpc(request: Request, method: str, params: dict[str, Any]) -> Any:
    return call_sync(rpc_context(request), method, params)


def query_params(request: Request, serializer_class: type[s.serializers.Serializer]) -> dict[str, Any]:
    """Typed params from the query string; only the parameters given are passed on."""
    serializer = serializer_class(data=request.query_params.dict())
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def body_params(request: Request) -> dict[str, Any]:
    """The JSON body as the RPC params (an empty body is ``{}``)."""
    data = request.data
    if not isinstance(data, dict):
        raise InvalidRequestError("request body must be a JSON object", details={"code": "INVALID_BODY"})
    return dict(data)


class GatewayApi(APIView):
    permission_classes = [IsOperator]


# --- gateway --------------------------------------------------------------------


class HealthGetApi(GatewayApi):
    @extend_schema(operation_id="health", tags=["gateway"], responses={200: s.HealthOutput, **ERRORS})
    def get(self, request: Request) -> Response:
        return Response(rpc(request, "health", {}))


class AgentListApi(GatewayApi):
    @extend_schema(operation_id="agents_list", tags=["gateway"], responses={200: s.AgentListOutput, **ERRORS})
    def get(self, request: Request) -> Response:
        return Response(rpc(request, "agents.list", {}))


# --- sessions -------------------------------------------------------------------


class SessionListApi(GatewayApi):
    @extend_schema(
        operation_id="sessions_list", tags=["sessions"], parameters=[s.SessionListQuery],
        responses={200: s.SessionListOutput, **ERRORS},
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        return Response(rpc(request, "sessions.list", query_params(request, s.SessionListQuery)))


class SessionCreateApi(GatewayApi):
    @extend_schema(
        operation_id="sessions_create", tags=["sessions"], request=s.SessionCreateInput,
        responses={201: s.SessionCreateOutput, **ERRORS},
    )  # fmt: skip
    def post(self, request: Request) -> Response:
        return Response(rpc(request, "sessions.create", body_params(request)), status=status.HTTP_201_CREATED)


class SessionCollectionApi(SessionListApi, SessionCreateApi):
    """``/sessions``: list (GET) and create (POST) share the URL."""


class SessionResolveApi(GatewayApi):
    @extend_schema(
        operation_id="sessions_resolve", tags=["sessions"], parameters=[s.SessionResolveQuery],
        responses={200: s.SessionResolveOutput, **ERRORS},
    )  # fmt: skip
    def get(self, request: Request) -> Response:
        return Response(rpc(request, "sessions.resolve", query_params(request, s.SessionResolveQuery)))


class SessionGetApi(GatewayApi):
    @extend_schema(
        operation_id="sessions_get", tags=["sessions"], parameters=[KEY_PARAM, s.SessionGetQuery],
        responses={200: s.SessionGetOutput, **ERRORS},
    )  # fmt: skip
    def get(self, request: Request, key: str) -> Response:
        return Response(rpc(request, "sessions.get", {"key": key, **query_params(request, s.SessionGetQuery)}))


class SessionPatchApi(GatewayApi):
    @extend_schema(
        operation_id="sessions_patch", tags=["sessions"], parameters=[KEY_PARAM], request=s.SessionPatchInput,
        responses={200: s.SessionEntryOutput, **ERRORS},
    )  # fmt: skip
    def patch(self, request: Request, key: str) -> Response:
        return Response(rpc(request, "sessions.patch", {**body_params(request), "key": key}))


class SessionDeleteApi(GatewayApi):
    @extend_schema(
        operation_id="sessions_delete", tags=["sessions"], parameters=[KEY_PARAM, s.SessionDeleteQuery],
        responses={200: s.SessionDeleteOutput, **ERRORS},
    )  # fmt: skip
    def delete(self, request: Request, key: str) -> Response:
        return Response(rpc(request, "sessions.delete", {"key": key, **query_params(request, s.SessionDeleteQuery)}))


class SessionDetailApi(SessionGetApi, SessionPatchApi, SessionDeleteApi):
    """``/sessions/<key>``: get, patch and delete share the URL."""


class SessionResetApi(GatewayApi):
    @extend_schema(
        operation_id="sessions_reset", tags=["sessions"], parameters=[KEY_PARAM], request=s.SessionResetInput,
        responses={200: s.SessionEntryOutput, **ERRORS},
    )  # fmt: skip
    def post(self, request: Request, key: str) -> Response:
        return Response(rpc(request, "sessions.reset", {**body_params(request), "key": key}))


# --- transcripts ----------------------------------------------------------------


class TranscriptGetApi(GatewayApi):
    @extend_schema(
        operation_id="chat_history", tags=["transcripts"], parameters=[KEY_PARAM, s.TranscriptQuery],
        responses={200: s.TranscriptOutput, **ERRORS},
    )  # fmt: skip
    def get(self, request: Request, key: str) -> Response:
        params = {"sessionKey": key, **query_params(request, s.TranscriptQuery)}
        return Response(rpc(request, "chat.history", params))


class TranscriptInjectApi(GatewayApi):
    @extend_schema(
        operation_id="chat_inject", tags=["transcripts"], parameters=[KEY_PARAM], request=s.ChatInjectInput,
        responses={200: s.ChatInjectOutput, **ERRORS},
    )  # fmt: skip
    def post(self, request: Request, key: str) -> Response:
        return Response(rpc(request, "chat.inject", {**body_params(request), "sessionKey": key}))

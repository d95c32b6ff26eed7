"""REST doors onto agent turns (issue 3): start, wait, read, abort and follow a run.

- ``POST /api/v1/sessions/<key>/messages``: ``chat.send`` (body ``{message,
  idempotencyKey, timeoutMs?}``) → 202 ``{runId, status: "started"}``; a replay of the
  idempotency key answers 200 from the recorded run (``in_flight`` or its end).
- ``GET /api/v1/runs/<runId>/wait?timeoutMs=``: ``agent.wait`` (30 000 ms by default).
- ``GET /api/v1/runs/<runId>``: the run row.
- ``POST /api/v1/runs/<runId>/abort``: abort a queued or running run (``services.runs.run_abort``).
- ``GET /api/v1/runs/<runId>/events``: the run's events as server-sent events, stored
  ones first (after ``?afterSeq=`` or ``Last-Event-ID``), then live ones, until the run
  has ended (then one ``event: end``) or ``?timeoutMs=`` passed.

The views are async: waiting and streaming hold no thread. They run the same RPC
methods (``rpc.dispatch``) and services as the WebSocket, with DRF's authentication,
permission checks and error envelope (:class:`AsyncGatewayApi`).
"""

from __future__ import annotations

import inspect
import json
import time
from typing import Any, AsyncIterator

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from ..engine.waiters import run_events_follow, run_wait_bound
from ..rpc import dispatch
from ..selectors import run_get
from ..serializers import run_row
from ..services.runs import run_abort
from .views import ERRORS, KEY_PARAM, GatewayApi, body_params, rpc_context

RUN_PARAM = OpenApiParameter("runId", str, OpenApiParameter.PATH, description="Run id (= the idempotency key).")
TIMEOUT_PARAM = OpenApiParameter("timeoutMs", int, description="How long to wait, in milliseconds.")
AFTER_PARAM = OpenApiParameter("afterSeq", int, description="Only events after this sessionSeq (also Last-Event-ID).")
KEEPALIVE_S = 15.0
MAX_STREAM_MS = 3_600_000


class AsyncGatewayApi(GatewayApi):
    """An operator-only APIView whose handlers are coroutines: authentication, permission
    checks and throttles run in a worker thread (they may read the database), the handler
    on the event loop, exceptions leave as the gateway envelope."""

    async def dispatch(self, request, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        request = self.initialize_request(request, *args, **kwargs)
        self.request = request
        self.headers = self.default_response_headers
        try:
            await sync_to_async(self.initial)(request, *args, **kwargs)
            handler = getattr(self, request.method.lower(), None) if request.method.lower() in self.http_method_names else None
            response = (handler or self.http_method_not_allowed)(request, *args, **kwargs)
            if inspect.isawaitable(response):
                response = await response
        except Exception as exc:
            response = self.handle_exception(exc)
        self.response = self.finalize_response(request, response, *args, **kwargs)
        return self.response


def _int_param(request: Request, name: str) -> int | None:
    value = request.query_params.get(name) or (request.headers.get("Last-Event-ID") if name == "afterSeq" else None)
    if value is None or value == "":
        return None
    if not value.isdigit():
        from openclaw_site.errors import InvalidRequestError

        raise InvalidRequestError(f"invalid {name}: {value}", details={"code": "INVALID_PARAMS", "field": name})
    return int(value)


class RunStartApi(AsyncGatewayApi):
    @extend_schema(
        operation_id="runs_start", tags=["runs"], parameters=[KEY_PARAM], request=OpenApiTypes.OBJECT,
        responses={200: OpenApiTypes.OBJECT, 202: OpenApiTypes.OBJECT, **ERRORS},
        description="Send a message into the session (chat.send): body {message, idempotencyKey, timeoutMs?}. "
        "202 when a run started, 200 for a replay of the idempotency key (in_flight or its end).",
    )  # fmt: skip
    async def post(self, request: Request, key: str) -> Response:
        params = {**body_params(request), "sessionKey": key}
        result = await dispatch(rpc_context(request), "chat.send", params)
        started = result.get("status") == "started"
        return Response(result, status=status.HTTP_202_ACCEPTED if started else status.HTTP_200_OK)


class RunWaitApi(AsyncGatewayApi):
    @extend_schema(
        operation_id="runs_wait", tags=["runs"], parameters=[RUN_PARAM, TIMEOUT_PARAM],
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
        description="agent.wait: {runId, status ok|error|timeout, startedAt, endedAt, error}; a timeout leaves the run running.",
    )  # fmt: skip
    async def get(self, request: Request, run_id: str) -> Response:
        await sync_to_async(run_get)(run_id=run_id)
        params: dict[str, Any] = {"runId": run_id}
        timeout_ms = _int_param(request, "timeoutMs")
        if timeout_ms is not None:
            params["timeoutMs"] = timeout_ms
        return Response(await dispatch(rpc_context(request), "agent.wait", params))


class RunDetailApi(AsyncGatewayApi):
    @extend_schema(operation_id="runs_get", tags=["runs"], parameters=[RUN_PARAM],
                   responses={200: OpenApiTypes.OBJECT, **ERRORS})  # fmt: skip
    async def get(self, request: Request, run_id: str) -> Response:
        return Response(run_row(await sync_to_async(run_get)(run_id=run_id)))


class RunAbortApi(AsyncGatewayApi):
    @extend_schema(
        operation_id="runs_abort", tags=["runs"], parameters=[RUN_PARAM], request=None,
        responses={200: OpenApiTypes.OBJECT, **ERRORS},
        description="Abort a queued run (ends aborted at once) or a running one (its engine stops it); "
        "a run that already ended is refused (RUN_NOT_ACTIVE).",
    )  # fmt: skip
    async def post(self, request: Request, run_id: str) -> Response:
        run = await sync_to_async(_abort)(run_id)
        return Response({"ok": True, **run_row(run)})


def _abort(run_id: str):
    return run_abort(run=run_get(run_id=run_id), reason="aborted over REST")


class RunEventsApi(AsyncGatewayApi):
    @extend_schema(
        operation_id="runs_events", tags=["runs"], parameters=[RUN_PARAM, AFTER_PARAM, TIMEOUT_PARAM],
        responses={(200, "text/event-stream"): OpenApiTypes.STR, **ERRORS},
        description="Server-sent events of the run (`id: <sessionSeq>`, `event: chat|agent|sessions.changed`, "
        "`data: <payload>`): stored ones, then live ones, until the run ended (`event: end`) or timeoutMs.",
    )  # fmt: skip
    async def get(self, request: Request, run_id: str) -> StreamingHttpResponse:
        run = await sync_to_async(run_get)(run_id=run_id)
        max_s = await sync_to_async(run_wait_bound)(run)
        timeout_ms = _int_param(request, "timeoutMs")
        if timeout_ms is not None:
            max_s = min(timeout_ms, MAX_STREAM_MS) / 1000
        stream = _sse(run_events_follow(run, after_seq=_int_param(request, "afterSeq") or 0, max_s=max_s))
        response = StreamingHttpResponse(stream, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response


async def _sse(events: AsyncIterator[dict[str, Any] | None]) -> AsyncIterator[bytes]:
    """``id/event/data`` blocks; a comment line when nothing was sent for a while."""
    quiet_since = time.monotonic()
    async for item in events:
        if item is None:
            if time.monotonic() - quiet_since >= KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield b": keep-alive\n\n"
            continue
        quiet_since = time.monotonic()
        lines = [f"id: {item['seq']}"] if item.get("seq") is not None else []
        lines += [f"event: {item['event']}", f"data: {json.dumps(item['payload'], separators=(',', ':'))}"]
        yield ("\n".join(lines) + "\n\n").encode()


# Included by ``api/urls.py`` before the catch-all ``sessions/<path:key>`` route.
urlpatterns = [
    path("sessions/<path:key>/messages", RunStartApi.as_view(), name="api-session-messages"),
    path("runs/<path:run_id>/wait", RunWaitApi.as_view(), name="api-run-wait"),
    path("runs/<path:run_id>/abort", RunAbortApi.as_view(), name="api-run-abort"),
    path("runs/<path:run_id>/events", RunEventsApi.as_view(), name="api-run-events"),
    path("runs/<path:run_id>", RunDetailApi.as_view(), name="api-run"),
]

"""schemathesis against ``/api/v1/schema/``: generated valid and invalid requests to every
REST operation, in process (Django's WSGI handler) with the gateway token.

Every response is below 500, and every error (4xx) is the gateway envelope
``{"error": {"code", "message", ...}}`` with a non-empty code.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings

from openclaw_site.config import override_config

TOKEN = "fuzz-token"
MAX_EXAMPLES = 25
ERROR_CODES = {"INVALID_REQUEST", "FORBIDDEN", "UNAVAILABLE", "AGENT_TIMEOUT", "NOT_PAIRED", "NOT_FOUND"}


def _load_schema() -> schemathesis.BaseSchema:
    document = SchemaGenerator().get_schema(request=None, public=True)
    loaded = schemathesis.openapi.from_dict(json.loads(json.dumps(document, default=str)))
    loaded.app = get_wsgi_application()
    loaded.config.generation.update(
        modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
        max_examples=MAX_EXAMPLES,
    )
    return loaded


schema = _load_schema()


@schemathesis.check
def error_envelope(ctx, response, case) -> None:
    """A 4xx body is ``{"error": {"code": <known code>, "message": str}}``."""
    if response.status_code < 400:
        return None
    body = json.loads(response.content or b"null")
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"{response.status_code} without an error envelope: {body!r}"
    assert error.get("code") in ERROR_CODES, f"unknown error code: {error!r}"
    assert isinstance(error.get("message"), str) and error["message"], f"error without a message: {error!r}"
    return None


@pytest.fixture(autouse=True)
def _in_process_requests():
    """The token config, and requests that keep the test's database connection (as Django's
    test client does: no closing of connections at request start and end)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        with override_config({"gateway": {"auth": {"mode": "token", "token": TOKEN}}}):
            yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_rest_operation_never_fails_and_errors_carry_a_code(case):
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
    case.validate_response(response, checks=[schemathesis.checks.not_a_server_error, error_envelope])

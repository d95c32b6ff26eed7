"""The OpenAPI 3 document of /api/v1/ and its browsable docs page, served without a CDN."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLResolver, get_resolver
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

ROUTES = {
    "/api/v1/health": {"get"},
    "/api/v1/agents": {"get"},
    "/api/v1/sessions": {"get", "post"},
    "/api/v1/sessions/resolve": {"get"},
    "/api/v1/sessions/{key}": {"get", "patch", "delete"},
    "/api/v1/sessions/{key}/reset": {"post"},
    "/api/v1/sessions/{key}/transcript": {"get"},
    "/api/v1/sessions/{key}/inject": {"post"},
}


@pytest.fixture
def schema() -> dict:
    response = Client().get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_openapi_schema_is_valid_openapi_3(schema):
    """The document passes the OpenAPI 3 JSON schema (raises otherwise)."""
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)


def _api_routes(patterns, prefix: str = "") -> set[str]:
    """Every route of the URLconf under /api/v1/, in OpenAPI's ``{param}`` spelling."""
    routes: set[str] = set()
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            routes |= _api_routes(pattern.url_patterns, route)
        elif route.startswith("api/v1/") and route not in ("api/v1/schema/", "api/v1/docs/"):
            routes.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))
    return routes


def test_openapi_schema_lists_every_route(schema):
    """The operations of this issue are there with their methods, and no route is undocumented."""
    methods = {path: {m for m in ops if m in {"get", "post", "patch", "delete", "put"}} for path, ops in schema["paths"].items()}
    assert {path: methods.get(path) for path in ROUTES} == ROUTES
    assert _api_routes(get_resolver().url_patterns) == set(schema["paths"])


def test_openapi_operations_document_the_error_envelope_and_bearer_auth(schema):
    assert schema["components"]["securitySchemes"]["gatewayToken"] == {
        "type": "http", "scheme": "bearer", "description": schema["components"]["securitySchemes"]["gatewayToken"]["description"],
    }  # fmt: skip
    envelope = schema["components"]["schemas"]["ErrorEnvelopeOutput"]
    assert envelope["properties"]["error"]["$ref"].endswith("/ErrorBodyOutput")
    for path, ops in ROUTES.items():
        for method in ops:
            operation = schema["paths"][path][method]
            assert {"400", "401", "403", "404"} <= set(operation["responses"]), (path, method)
            assert {"gatewayToken": []} in operation["security"], (path, method)


def test_openapi_list_query_parameters_are_documented(schema):
    names = {p["name"] for p in schema["paths"]["/api/v1/sessions"]["get"]["parameters"]}
    assert {"limit", "agentId", "label", "search", "spawnedBy", "activeMinutes"} <= names


def test_openapi_docs_page_uses_local_assets():
    """The Swagger UI page loads its JS/CSS from this server's static files, not a CDN."""
    client = Client()
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/api/v1/schema/" in html
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
    assert assets, html
    assert all(url.startswith("/static/") for url in assets), assets
    for url in assets:
        assert client.get(url).status_code == 200, url

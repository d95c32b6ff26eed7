"""Who may use the REST API and the browser pages, route by route from the URLconf.

Every ``/api/v1/`` operation refuses an anonymous caller (401, the gateway envelope) and
a wrong token (401); a logged-in non-staff user gets 403; the gateway token and a staff
login get through. Session-authenticated writes need the CSRF token (DRF's
SessionAuthentication), the admin too; token-authenticated calls do not. Only the
OpenAPI document and its docs page are public (they describe the API, they hold no data).
"""

from __future__ import annotations

import hmac
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from openclaw_site.config import override_config

pytestmark = pytest.mark.django_db

TOKEN = "rest-secret"
PUBLIC = {"/api/v1/schema/", "/api/v1/docs/"}
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def _routes(patterns, prefix: str = "") -> list[tuple[str, type]]:
    found = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += _routes(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            view = getattr(pattern.callback, "view_class", None) or getattr(pattern.callback, "cls", None)
            found.append(("/" + re.sub(r"<(?:\w+:)?(\w+)>", "x1", route), view))
    return found


API_OPERATIONS = sorted(
    (path, method)
    for path, view in _routes(get_resolver().url_patterns)
    if path.startswith("/api/v1/") and path not in PUBLIC and view is not None
    for method in HTTP_METHODS
    if hasattr(view, method)
)


@pytest.fixture(autouse=True)
def token_auth():
    with override_config({"gateway": {"auth": {"mode": "token", "token": TOKEN}}}):
        yield


def _call(client: Client, method: str, path: str, **extra):
    return getattr(client, method)(path, data={} if method == "get" else "{}", content_type="application/json", **extra)


def _assert_envelope(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    error = response.json()["error"]
    assert error["code"] in ("INVALID_REQUEST", "FORBIDDEN") and error["message"], error
    return error


def test_the_urlconf_has_the_routes_we_expect_to_guard():
    paths = {path for path, _ in API_OPERATIONS}
    assert {"/api/v1/health", "/api/v1/sessions", "/api/v1/sessions/x1", "/api/v1/wake"} <= paths
    assert len(API_OPERATIONS) >= 20


@pytest.mark.parametrize(("path", "method"), API_OPERATIONS)
def test_anonymous_caller_gets_401_envelope(path, method):
    response = _call(Client(), method, path)
    error = _assert_envelope(response, 401)
    assert error["details"]["code"] == "UNAUTHENTICATED"
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(("path", "method"), API_OPERATIONS)
def test_wrong_token_gets_401_envelope(path, method):
    response = _call(Client(), method, path, HTTP_AUTHORIZATION="Bearer not-the-token")
    assert _assert_envelope(response, 401)["details"]["code"] == "AUTH_TOKEN_MISMATCH"


@pytest.mark.parametrize(("path", "method"), API_OPERATIONS)
def test_logged_in_non_staff_user_gets_403(path, method):
    client = Client()
    client.force_login(get_user_model().objects.create_user("visitor"))
    _assert_envelope(_call(client, method, path), 403)


@pytest.mark.parametrize(("path", "method"), API_OPERATIONS)
def test_token_and_staff_login_get_through(path, method):
    """Past authentication: whatever the operation answers, it is not 401/403."""
    with_token = _call(Client(), method, path, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert with_token.status_code not in (401, 403), with_token.content[:300]
    staff = Client()
    staff.force_login(get_user_model().objects.create_user("op", is_staff=True))
    as_staff = _call(staff, method, path) if method == "get" else None
    if as_staff is not None:
        assert as_staff.status_code not in (401, 403), as_staff.content[:300]


def test_password_mode_takes_the_password_as_bearer():
    with override_config({"gateway": {"auth": {"mode": "password", "password": "pw-secret"}}}):
        assert Client().get("/api/v1/health", HTTP_AUTHORIZATION="Bearer pw-secret").status_code == 200
        assert Client().get("/api/v1/health", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 401
        assert Client().get("/api/v1/health").status_code == 401


def test_public_routes_are_only_the_api_description():
    for path in PUBLIC:
        assert Client().get(path).status_code == 200


def test_browser_pages_need_a_staff_login():
    """The WebChat hub and the admin redirect an anonymous visitor to the login page."""
    for path in ("/", "/admin/"):
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/"), path
    visitor = Client()
    visitor.force_login(get_user_model().objects.create_user("v2"))
    assert visitor.get("/").status_code == 302


# --- CSRF -------------------------------------------------------------------------------


@pytest.fixture
def staff_client():
    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.create_user("csrf-op", is_staff=True))
    return client


def test_session_authenticated_write_without_csrf_token_is_refused(staff_client):
    response = staff_client.post("/api/v1/sessions", "{}", content_type="application/json")
    error = _assert_envelope(response, 403)
    assert "CSRF" in error["message"]


def test_session_authenticated_write_with_csrf_token_passes(staff_client):
    staff_client.get("/admin/")  # sets the csrftoken cookie
    token = staff_client.cookies["csrftoken"].value
    response = staff_client.post("/api/v1/sessions", "{}", content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code in (200, 201), response.content[:300]


def test_token_authenticated_write_needs_no_csrf_token():
    client = Client(enforce_csrf_checks=True)
    response = client.post("/api/v1/sessions", "{}", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code in (200, 201), response.content[:300]


def test_admin_post_without_csrf_token_is_refused(staff_client):
    get_user_model().objects.create_superuser("root", password="pw-123456")
    anonymous = Client(enforce_csrf_checks=True)
    assert anonymous.post("/admin/login/", {"username": "root", "password": "pw-123456"}).status_code == 403
    assert staff_client.post("/admin/logout/").status_code == 403


# --- constant-time comparison ----------------------------------------------------------------


def test_rest_and_websocket_secrets_are_compared_with_compare_digest(monkeypatch):
    """Both doors compare the presented secret through ``hmac.compare_digest``."""
    from sessions_app import protocol
    from sessions_app.api import auth as rest_auth

    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert rest_auth.hmac is hmac and protocol.hmac is hmac
    Client().get("/api/v1/health", HTTP_AUTHORIZATION="Bearer guess")
    assert calls == [(b"guess", TOKEN.encode())]
    calls.clear()
    with pytest.raises(protocol.AuthMismatchError):
        protocol.authenticate({"auth": {"token": "guess"}})
    assert calls == [(b"guess", TOKEN.encode())]
    with override_config({"gateway": {"auth": {"mode": "password", "password": "pw"}}}):
        calls.clear()
        with pytest.raises(protocol.AuthMismatchError):
            protocol.authenticate({"auth": {"password": "nope"}})
        assert calls == [(b"nope", b"pw")]

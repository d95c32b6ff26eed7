"""``/api/v1/`` routes. Keys contain colons (``agent:main:main``) and may contain slashes,
so they use the ``path`` converter; the suffixed routes come first, so that
``sessions/<key>/reset`` is never read as a key ending in ``/reset``."""

from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import views

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("health", views.HealthGetApi.as_view(), name="api-health"),
    path("agents", views.AgentListApi.as_view(), name="api-agents"),
    path("sessions", views.SessionCollectionApi.as_view(), name="api-sessions"),
    path("sessions/resolve", views.SessionResolveApi.as_view(), name="api-session-resolve"),
    path("sessions/<path:key>/reset", views.SessionResetApi.as_view(), name="api-session-reset"),
    path("sessions/<path:key>/transcript", views.TranscriptGetApi.as_view(), name="api-session-transcript"),
    path("sessions/<path:key>/inject", views.TranscriptInjectApi.as_view(), name="api-session-inject"),
    path("", include("sessions_app.api.subagents")),
    path("", include("sessions_app.api.deliveries")),
    path("", include("sessions_app.api.runs")),
    path("", include("cron_app.api.urls")),
    path("", include("acp_app.api.urls")),
    path("sessions/<path:key>", views.SessionDetailApi.as_view(), name="api-session"),
]

"""Wake and system-event routes, included by ``sessions_app/api/urls.py`` (before the
catch-all ``sessions/<key>``)."""

from django.urls import path

from . import views

urlpatterns = [
    path("wake", views.WakeApi.as_view(), name="api-wake"),
    path("system-events", views.SystemEventCreateApi.as_view(), name="api-system-events"),
    path("sessions/<path:key>/system-events", views.SessionSystemEventListApi.as_view(), name="api-session-system-events"),
]

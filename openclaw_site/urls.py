from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("sessions_app.api.urls")),
    path("", include("sessions_app.urls")),
]

handler404 = "openclaw_site.handlers.page_not_found"
handler500 = "openclaw_site.handlers.server_error"

from django.contrib import admin
from django.urls import include, path

from sessions_app import views as webchat_views

urlpatterns = [
    path("admin/dashboard/", admin.site.admin_view(webchat_views.admin_dashboard), name="admin-dashboard"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("sessions_app.api.urls")),
    path("", include("sessions_app.urls")),
]

handler404 = "openclaw_site.handlers.page_not_found"
handler500 = "openclaw_site.handlers.server_error"

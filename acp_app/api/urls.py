"""``/api/v1/delegates…`` routes (included by ``sessions_app/api/urls.py``)."""

from django.urls import path

from . import views

urlpatterns = [
    path("delegates", views.DelegateListApi.as_view(), name="api-delegates"),
    path("delegates/status", views.DelegateStatusApi.as_view(), name="api-delegate-status"),
    path("delegates/close", views.DelegateCloseApi.as_view(), name="api-delegate-close"),
    path("delegates/sweep", views.DelegateSweepApi.as_view(), name="api-delegate-sweep"),
]

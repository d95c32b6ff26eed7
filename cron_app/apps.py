import logging

from django.apps import AppConfig
from django.db import DatabaseError
from django.db.models.signals import post_migrate

logger = logging.getLogger(__name__)


def _ensure_schedules(sender, using="default", **kwargs) -> None:
    """After ``migrate``: declare the django-q2 schedules (idempotent, no data needed)."""
    from .scheduler import schedules_ensure

    try:
        schedules_ensure()
    except DatabaseError:  # django_q not migrated yet (``migrate cron_app`` alone)
        logger.warning("django-q2 tables missing; run `manage.py ensure_schedules` after migrating")


class CronAppConfig(AppConfig):
    name = "cron_app"
    verbose_name = "Heartbeats and cron"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import hooks  # noqa: F401  (registers the heartbeat and cron run hooks)

        post_migrate.connect(_ensure_schedules, sender=self, dispatch_uid="cron_app.ensure_schedules")

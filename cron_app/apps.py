from django.apps import AppConfig


class CronAppConfig(AppConfig):
    name = "cron_app"
    verbose_name = "Heartbeats and cron"
    default_auto_field = "django.db.models.BigAutoField"

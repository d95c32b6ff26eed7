from django.apps import AppConfig


class AcpAppConfig(AppConfig):
    name = "acp_app"
    verbose_name = "ACP delegates"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .integration import register

        register()

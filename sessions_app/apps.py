import importlib
import pkgutil

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class SessionsAppConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Agent sessions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # RPC methods register themselves on import: every module of sessions_app.rpc,
        # and the ``rpc`` module of every other installed app.
        from . import rpc

        for info in pkgutil.iter_modules(rpc.__path__):
            importlib.import_module(f"{rpc.__name__}.{info.name}")
        autodiscover_modules("rpc")

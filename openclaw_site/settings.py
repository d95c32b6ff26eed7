"""Settings, driven by the environment.

Embedded default (no environment): SQLite in WAL mode under the state directory, the
in-memory channel layer, django-q2 on the ORM broker. ``DATABASE_URL`` switches the
database (PostgreSQL), ``REDIS_URL`` the channel layer and the django-q2 broker.
"""

import os
import sys
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


OPENCLAW_STATE_DIR = Path(os.environ.get("OPENCLAW_STATE_DIR", BASE_DIR / ".openclaw")).expanduser()
OPENCLAW_CONFIG_PATH = os.environ.get("OPENCLAW_CONFIG_PATH") or str(OPENCLAW_STATE_DIR / "openclaw.json")

DEBUG = _env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or os.environ.get("SECRET_KEY")
if not SECRET_KEY:
    # A stable per-install key kept in the state directory, so sessions survive restarts
    # without anyone having to invent a secret for the embedded default.
    _key_file = OPENCLAW_STATE_DIR / "secret_key"
    try:
        OPENCLAW_STATE_DIR.mkdir(parents=True, exist_ok=True)
        if not _key_file.exists():
            import secrets

            _key_file.write_text(secrets.token_urlsafe(50))
            _key_file.chmod(0o600)
        SECRET_KEY = _key_file.read_text().strip()
    except OSError:
        SECRET_KEY = "insecure-fallback-key-set-DJANGO_SECRET_KEY"

ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "sessions_app",
    "acp_app",
    "cron_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "openclaw_site.urls"
ASGI_APPLICATION = "openclaw_site.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_sqlite_path = OPENCLAW_STATE_DIR / "gateway.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{_sqlite_path}",
    )
}
# A SQLite connection is an open file: every thread keeps its own (opening one costs
# more than most queries). PostgreSQL connections close after each unit of work unless
# DATABASE_CONN_MAX_AGE says otherwise (seconds; "none" = forever).
_conn_max_age = os.environ.get("DATABASE_CONN_MAX_AGE", "none" if DATABASES["default"]["ENGINE"].endswith("sqlite3") else "0")
DATABASES["default"]["CONN_MAX_AGE"] = None if _conn_max_age.lower() == "none" else int(_conn_max_age)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the single writer; the busy timeout makes a writer
    # wait for the lock instead of failing at once; IMMEDIATE takes the write lock at
    # BEGIN so two writers never deadlock on lock upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
    }
# Tests that start real gateway processes need a test database those processes can open:
# a file for SQLite (never in-memory), a per-run name for PostgreSQL so that parallel
# test runs on one machine do not collide.
_test_db = os.environ.get("OPENCLAW_TEST_DB_NAME")
if not _test_db and "pytest" in sys.modules:
    _test_db = (
        f"/tmp/openclaw-test-{os.getpid()}.sqlite3"
        if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
        else f"test_openclaw_{os.getpid()}"
    )
if _test_db:
    DATABASES["default"]["TEST"] = {"NAME": _test_db}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
# A connection's channel receives the events of every session it follows: 1,000 busy
# sessions at once send several events each, so a small per-channel capacity drops
# (ChannelFull is swallowed by group_send) and a short expiry loses a slow reader's
# backlog, finals included (bench/findings.md). Clients still resume by sequence number.
CHANNEL_CAPACITY = int(os.environ.get("OPENCLAW_CHANNEL_CAPACITY", "50000"))
CHANNEL_EXPIRY_S = int(os.environ.get("OPENCLAW_CHANNEL_EXPIRY_S", "300"))
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS_URL],
                "prefix": os.environ.get("OPENCLAW_CHANNEL_PREFIX", "openclaw"),
                "capacity": CHANNEL_CAPACITY,
                "expiry": CHANNEL_EXPIRY_S,
            },
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "sessions_app.layers.GatewayInMemoryChannelLayer",
                                  "CONFIG": {"capacity": CHANNEL_CAPACITY, "expiry": CHANNEL_EXPIRY_S}}}  # fmt: skip

Q_CLUSTER = {
    "name": os.environ.get("OPENCLAW_Q_NAME", "openclaw"),
    "workers": int(os.environ.get("OPENCLAW_Q_WORKERS", "2")),
    "timeout": 300,
    "retry": 360,
    "max_attempts": 1,
    "catch_up": False,
    "poll": 0.5,
    "label": "Django Q2",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TZ_NAME", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = OPENCLAW_STATE_DIR / "static"
try:  # WhiteNoise warns on every request when STATIC_ROOT is missing
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
except OSError:
    pass
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "/admin/login/"
LOGIN_REDIRECT_URL = "/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "sessions_app.api.auth.GatewayTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "openclaw_site.errors.drf_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "OpenClaw-compatible session gateway API",
    "DESCRIPTION": "REST surface of the gateway. Every error is `{\"error\": {\"code\", \"message\", \"details\"}}`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI assets served locally (no CDN: the gateway may run offline).
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("OPENCLAW_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}

# Gateway-specific knobs (documented in docs/operations.md).
OPENCLAW_GATEWAY_TOKEN = os.environ.get("OPENCLAW_GATEWAY_TOKEN", "")
OPENCLAW_GATEWAY_PASSWORD = os.environ.get("OPENCLAW_GATEWAY_PASSWORD", "")
OPENCLAW_HANDSHAKE_TIMEOUT_S = float(os.environ.get("OPENCLAW_HANDSHAKE_TIMEOUT_S", "15"))
OPENCLAW_TICK_INTERVAL_MS = int(os.environ.get("OPENCLAW_TICK_INTERVAL_MS", "30000"))
OPENCLAW_MAX_PAYLOAD = 26_214_400
OPENCLAW_MAX_BUFFERED_BYTES = 52_428_800
OPENCLAW_PRECONNECT_MAX_BYTES = 65_536
OPENCLAW_ENGINE_POLL_S = float(os.environ.get("OPENCLAW_ENGINE_POLL_S", "1.0"))
OPENCLAW_ENGINE_LEASE_S = float(os.environ.get("OPENCLAW_ENGINE_LEASE_S", "30"))
OPENCLAW_ENGINE_MAX_CONCURRENCY = int(os.environ.get("OPENCLAW_ENGINE_MAX_CONCURRENCY", "2000"))
# Heartbeats and cron (cron_app; docs/operations.md "Heartbeats and cron").
OPENCLAW_SCHEDULER_TICK_S = float(os.environ.get("OPENCLAW_SCHEDULER_TICK_S", "1.0"))
OPENCLAW_HEARTBEAT_SEED = os.environ.get("OPENCLAW_HEARTBEAT_SEED", "")
OPENCLAW_CRON_MISSED_GRACE_S = float(os.environ.get("OPENCLAW_CRON_MISSED_GRACE_S", "120"))
OPENCLAW_CRON_WEBHOOK_RETRY_DELAYS_S = tuple(
    float(v) for v in os.environ.get("OPENCLAW_CRON_WEBHOOK_RETRY_DELAYS_S", "1,5,25").split(",") if v.strip()
)

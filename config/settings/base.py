"""Django itself: the secret key, hosts, apps, middleware, templates, the database, static
files and HTTPS. Every variable read here is described in docs/settings.md."""

from __future__ import annotations

import contextlib
from pathlib import Path

import dj_database_url

from config.env import ConfigurationError, env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
# bin/up keeps a generated key in this file, so manage.py in another shell finds it too.
SECRET_KEY_FILE = Path(env_str("SECRET_KEY_FILE") or (BASE_DIR / "var" / "secret_key"))
if not SECRET_KEY and SECRET_KEY_FILE.is_file():
    SECRET_KEY = SECRET_KEY_FILE.read_text().strip()
if not SECRET_KEY:
    if not DEBUG and not env_bool("ALLOW_INSECURE_SECRET_KEY", False):
        raise ConfigurationError(
            "SECRET_KEY is not set. Set it in the environment (see .env.example), "
            "or set DEBUG=1 for a local development key."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    # Before the admin, so its templates/admin/base_site.html (the header's links) overrides the admin's own.
    "apps.core",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from here, not a CDN
    "corsheaders",
    "django_tasks",  # the django.tasks backport's system checks (apps.jobs.tasks); drop on Django 6
    "apps.jobs",
    "apps.deadletters",
    "apps.webhooks",
    "apps.workflows",
    "apps.schedules",
    "apps.files",
    "apps.web",
    "apps.ops",
]

MIDDLEWARE = [
    "apps.core.request_id.RequestIdMiddleware",
    "apps.ops.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before anything that may answer on its own (WhiteNoise, the body limit), so those answers
    # carry CORS headers too and a browser client can read them.
    "corsheaders.middleware.CorsMiddleware",
    # WhiteNoise serves the admin's static files from the app itself, so the admin has its
    # styles with DEBUG off and no separate web server in front.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.core.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:index"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# DATABASE_URL unset means a SQLite file beside the project; PostgreSQL in CI and production.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and env_bool("DATABASE_PREPARED_STATEMENTS", True):
    # The worker's claim and finish run as prepared statements (apps.jobs.lifecycle), planned
    # once per connection instead of per job. Django's own cursors bind on the client and
    # never prepare, so nothing else changes. Set 0 behind PgBouncer older than 1.21 in
    # transaction mode, which cannot follow prepared statements.
    DATABASES["default"]["OPTIONS"] = {"prepare_threshold": 2}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A connection whose server vanished (a failover, a partition) fails within seconds
    # instead of TCP's fifteen minutes, so the control loop and the workers reconnect on their
    # next try. https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-KEEPALIVES
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "connect_timeout": env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1),
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 3,
            "keepalives_count": 3,
            "tcp_user_timeout": env_int("DATABASE_TCP_USER_TIMEOUT_MS", 15_000, minimum=0),
        }
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # One machine, several processes (web, worker, beat): wait for the write lock instead of
    # failing, and take it at BEGIN so two writers never deadlock on an upgrade.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Serve straight from the apps' static folders: the stack runs without a collectstatic step.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# WhiteNoise warns on every start while nothing has been collected yet.
with contextlib.suppress(OSError):
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)

# Behind TLS in production: secure cookies, and trust the proxy's scheme header.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
if env_bool("TRUST_X_FORWARDED_PROTO", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# HTTPS only, in production (`manage.py check --deploy` wants these): redirect plain HTTP, and
# tell browsers to remember (HSTS). Start HSTS small; preload only once sure it is permanent.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Load balancers and Prometheus probe these over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

"""Settings for the job platform. Every value comes from the environment (12-factor);
the defaults run on one machine. `.env.example` lists every variable."""

from __future__ import annotations

import contextlib
from pathlib import Path

import dj_database_url
from kombu import Queue
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.env import ConfigurationError, env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

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
    "apps.core",
    "apps.jobs",
    "apps.deadletters",
    "apps.webhooks",
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
    # The worker's claim and finish run as prepared statements (apps.jobs.services), planned
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

# CORS for browser clients on other origins (django-cors-headers): none unless listed, e.g.
# CORS_ALLOWED_ORIGINS=https://app.example.com. Token auth, so no cookies cross origins.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", [])
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_HEADERS = [
    "accept",
    "authorization",
    "content-type",
    "idempotency-key",
    "if-none-match",
    "x-request-id",
]
CORS_EXPOSE_HEADERS = ["etag", "location", "retry-after", "idempotent-replayed", "x-request-id"]

# --- API -------------------------------------------------------------------------------
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 1_048_576, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES

REST_FRAMEWORK = {
    # Token first: an anonymous API call then answers 401 with WWW-Authenticate, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.core.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "EXCEPTION_HANDLER": "apps.core.exception_handlers.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # One client cannot starve the rest: requests per client, counted in Redis so every web
    # process shares the count.
    "DEFAULT_THROTTLE_CLASSES": ["apps.core.throttling.ClientRateThrottle"],
}
# Requests per client ("N/s", "N/min", "N/hour"); empty turns the throttle off.
API_THROTTLE_RATE = env_str("API_THROTTLE_RATE", "6000/min")

CACHES = {
    "default": {
        # Django's RedisCache, which also follows a sentinel:// REDIS_URL to its master.
        "BACKEND": "apps.core.cache.RedisCache",
        "LOCATION": env_str("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "KEY_PREFIX": "jobplatform",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Job platform API",
    "DESCRIPTION": "Submit jobs, poll their status, fetch their results.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Jobs ------------------------------------------------------------------------------
# The modules that declare kinds. The registry imports them at start-up, in the web process
# and the worker alike, so the web process can validate every kind without the worker runtime.
JOB_KIND_MODULES = env_list(
    "JOB_KIND_MODULES",
    ["workers.kinds.diagnostics", "workers.kinds.images", "workers.kinds.webhooks"],
)
DIAGNOSTICS_UNSAFE = env_bool("DIAGNOSTICS_UNSAFE", False)
JOB_LEASE_SECONDS = env_float("JOB_LEASE_SECONDS", 15.0, minimum=1.0)
JOB_RETRY_BASE_SECONDS = env_float("JOB_RETRY_BASE_SECONDS", 1.0, minimum=0.0)
JOB_RETRY_MAX_SECONDS = env_float("JOB_RETRY_MAX_SECONDS", 300.0, minimum=0.0)
RECONCILE_INTERVAL_SECONDS = env_float("RECONCILE_INTERVAL_SECONDS", 1.0, minimum=0.1)
# How long a committed job may wait for its publish before the relay publishes it itself.
OUTBOX_GRACE_SECONDS = env_float("OUTBOX_GRACE_SECONDS", 5.0, minimum=0.0)
# Admission control: jobs waiting per queue, and jobs in flight (queued, running, retrying)
# per client, past which submissions answer 429 with a Retry-After from the drain rate. A
# client's quota sits well below a queue's depth, so one client cannot fill a queue and turn
# every other client away with 429 queue_full.
QUEUE_MAX_DEPTH = env_int("QUEUE_MAX_DEPTH", 250_000, minimum=1)
CLIENT_MAX_IN_FLIGHT = env_int("CLIENT_MAX_IN_FLIGHT", 10_000, minimum=1)
# Who may ask for `high` priority (403 priority_not_allowed otherwise): staff, plus these
# usernames; `*` (the default, as the API contract has always allowed) lets every client.
# Name the clients in production so one client cannot jump every queue. A kind whose own
# default is high runs high for anyone.
HIGH_PRIORITY_CLIENTS = env_list("HIGH_PRIORITY_CLIENTS", ["*"])
RETRY_AFTER_MAX_SECONDS = env_int("RETRY_AFTER_MAX_SECONDS", 60, minimum=1)
# How long a job waits for its kind's concurrency slot or rate limit before another try.
JOB_DEFER_MAX_SECONDS = env_float("JOB_DEFER_MAX_SECONDS", 5.0, minimum=0.1)
# Webhooks: allow callback URLs on private and loopback addresses (local use only).
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)
# /metrics answers only with this bearer token when set (Prometheus: authorization.credentials).
METRICS_TOKEN = env_str("METRICS_TOKEN")
# Alert when the oldest job waiting on a queue is older than this (0 turns it off).
QUEUE_AGE_ALERT_SECONDS = env_float("QUEUE_AGE_ALERT_SECONDS", 300.0, minimum=0.0)
# Retention: finished jobs (with attempts) and resolved dead letters are pruned after these.
JOB_RETENTION_DAYS = env_float("JOB_RETENTION_DAYS", 30.0, minimum=0.0)
DEAD_LETTER_RETENTION_DAYS = env_float("DEAD_LETTER_RETENTION_DAYS", 90.0, minimum=0.0)
PRUNE_INTERVAL_SECONDS = env_float("PRUNE_INTERVAL_SECONDS", 300.0, minimum=1.0)
PRUNE_BATCH_SIZE = env_int("PRUNE_BATCH_SIZE", 1000, minimum=1)
DEAD_LETTER_CHECK_SECONDS = env_float("DEAD_LETTER_CHECK_SECONDS", 15.0, minimum=0.5)
DEAD_LETTER_ALERT_DEPTH = env_int("DEAD_LETTER_ALERT_DEPTH", 100, minimum=0)
ALERT_REPEAT_SECONDS = env_int("ALERT_REPEAT_SECONDS", 3600, minimum=1)
# Each alert channel (SMTP, webhook) gets this long to connect and answer; alerts are sent
# from a background thread, never the control loop's.
ALERT_TIMEOUT_SECONDS = env_float("ALERT_TIMEOUT_SECONDS", 5.0, minimum=0.1)
# The control loop: any number of beats elect one leader through a lease in PostgreSQL
# (apps.ops.control). The leader renews it every election interval; another beat takes over
# once it has run out, so a killed or cut-off leader is replaced within about
# CONTROL_LEASE_SECONDS + CONTROL_ELECTION_INTERVAL_SECONDS.
CONTROL_LEASE_SECONDS = env_float("CONTROL_LEASE_SECONDS", 5.0, minimum=1.0)
CONTROL_ELECTION_INTERVAL_SECONDS = env_float("CONTROL_ELECTION_INTERVAL_SECONDS", 1.0, minimum=0.1)
# /readyz answers 503, and an alert goes out, when no sweep has succeeded for this long.
CONTROL_LOOP_STALE_SECONDS = env_float("CONTROL_LOOP_STALE_SECONDS", 30.0, minimum=1.0)
# Where alerts go besides the ERROR log line: email addresses and/or a webhook (JSON POST).
ALERT_EMAILS = env_list("ALERT_EMAILS", [])
ALERT_WEBHOOK_URL = env_str("ALERT_WEBHOOK_URL")
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "jobs@localhost")
# Uploaded files and the files jobs make, through Django's storage API (default_storage):
# a FileSystemStorage under MEDIA_ROOT unless STORAGES names another backend (a cloud bucket).
# Never served as /media/: files leave only through the API, to their owner.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or env_str("JOB_MEDIA_ROOT") or (BASE_DIR / "var" / "media"))
MEDIA_URL = "media/"
JOB_MEDIA_ROOT = MEDIA_ROOT  # the older name
# The largest file POST /api/v1/uploads accepts (413 above it).
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 20 * 1024 * 1024, minimum=1024)
# images.thumbnail decodes an image only when its pixels (times the bytes Pillow keeps per
# pixel, plus an RGB(A) conversion) fit this; a JPEG is decoded at a reduced scale first.
# The pixel limit alone let a 154 KB PNG of 6000x6600 pixels take a worker to 773 MB.
IMAGE_MAX_DECODE_BYTES = env_int("IMAGE_MAX_DECODE_BYTES", 64 * 1024 * 1024, minimum=1024 * 1024)
# Long polls (GET /api/v1/jobs/{id}?wait=N) waiting at once per web process; past it a poll
# answers at once. Each holds a gunicorn thread, so keep it under WEB_THREADS.
JOB_WAIT_MAX_WAITERS = env_int("JOB_WAIT_MAX_WAITERS", max(1, env_int("WEB_THREADS", 4, minimum=1) // 2), minimum=0)

# --- Celery (configured from these settings with the CELERY_ namespace) -----------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# REDIS_URL may name Redis Sentinel instead of one server, as kombu's sentinel transport reads
# it: `sentinel://host1:26379;sentinel://host2:26379;sentinel://host3:26379/0`, the master's
# password (if any) on every entry. Then this is the master the sentinels monitor (`sentinel
# monitor <name> ...`), and the broker and every Redis client follow its failovers.
REDIS_SENTINEL_MASTER = env_str("REDIS_SENTINEL_MASTER") or "mymaster"
# The sentinels' own password (`requirepass` in sentinel.conf), when they have one.
REDIS_SENTINEL_PASSWORD = env_str("REDIS_SENTINEL_PASSWORD")
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Redis redelivers an unacknowledged message only after this long; our lease reconciler
    # recovers crashed work in seconds, so this is the last resort, not the mechanism.
    # https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#visibility-timeout
    "visibility_timeout": env_int("BROKER_VISIBILITY_TIMEOUT", 3600, minimum=60),
    # Take from `high` before `default` before `low`, instead of kombu's round robin.
    "queue_order_strategy": "priority",
    "socket_timeout": 5,
    "socket_connect_timeout": 2,
    # For a sentinel:// REDIS_URL (kombu.transport.redis.SentinelChannel, and Flower's queue
    # view): the master to ask the sentinels for, and how to reach the sentinels. The plain
    # Redis transport ignores both.
    "master_name": REDIS_SENTINEL_MASTER,
    "sentinel_kwargs": {
        "socket_timeout": 5,
        "socket_connect_timeout": 2,
        # Ask each sentinel once and move on to the next: with redis-py's default retries a
        # dead sentinel listed first (often on the dead master's machine) cost every new
        # broker connection about 4 s.
        "retry": Retry(NoBackoff(), 0),
        **({"password": REDIS_SENTINEL_PASSWORD} if REDIS_SENTINEL_PASSWORD else {}),
    },
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# PostgreSQL holds every job's state; a Celery result backend would be a second, weaker copy.
CELERY_TASK_IGNORE_RESULT = True
# No task-sent events: they double the cost of every publish (a batch of 1,000 spent half its
# time on them). Flower still sees every task from the worker's received/started/succeeded.
CELERY_TASK_SEND_SENT_EVENT = False
# Task events feed Flower's task views. They cost the worker's main process a publish per
# loop (bench/run measures it); WORKER_TASK_EVENTS=0 turns them off, and a running Flower
# turns them on again in every worker (its enable_events, every 5 s).
CELERY_WORKER_SEND_TASK_EVENTS = env_bool("WORKER_TASK_EVENTS", True)
CELERY_TASK_DEFAULT_QUEUE = "default"
# Declared so every process (Flower's queue view included) knows them all, the dead_letter
# mirror too, even before a worker says what it consumes.
CELERY_TASK_QUEUES = [Queue(name) for name in ("high", "default", "low", "dead_letter")]
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("WORKER_MAX_TASKS_PER_CHILD", 1000, minimum=1)
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("WORKER_MAX_MEMORY_PER_CHILD_KB", 512_000, minimum=1024)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False


def _inline(task: str, every: float) -> dict[str, object]:
    """A beat entry that runs inside the beat process itself (workers.beat.InlineScheduler):
    recovery and monitoring must not wait behind a backlog, nor stop when every worker is
    busy or dead."""
    return {"task": task, "schedule": every, "options": {"inline": True}}


def _inline_fenced(task: str, every: float) -> dict[str, object]:
    """An inline entry whose task takes `fence`: a callable its transactions call first, which
    refuses the write when this beat no longer leads (apps.ops.control.control_loop_fence)."""
    entry = _inline(task, every)
    entry["options"] = {"inline": True, "fenced": True}
    return entry


CELERY_BEAT_SCHEDULE = {
    "reconcile": _inline_fenced("platform.reconcile", RECONCILE_INTERVAL_SECONDS),
    "prune": _inline("platform.prune", PRUNE_INTERVAL_SECONDS),
    "bulk-operations": _inline("platform.bulk_operations", 1.0),
    "queue-monitor": _inline("platform.queue_monitor", DEAD_LETTER_CHECK_SECONDS),
    "dead-letter-monitor": _inline("platform.dead_letter_monitor", DEAD_LETTER_CHECK_SECONDS),
}

# Seconds a webhook POST may take to connect, and for each read.
WEBHOOK_TIMEOUT_SECONDS = env_float("WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1)
# Where the admin links to Flower (e.g. https://ops.example.com/flower/); empty hides the link.
FLOWER_URL = env_str("FLOWER_URL")

# --- Flower ------------------------------------------------------------------------------
# Flower reads FLOWER_BASIC_AUTH, FLOWER_PORT, FLOWER_ADDRESS and FLOWER_URL_PREFIX itself.

# One JSON object per line (LOG_FORMAT=plain for people reading a terminal).
LOG_FORMAT = env_str("LOG_FORMAT", "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "apps.core.logging.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # gunicorn's access log is its own; Django's request log would repeat every 4xx.
        "django.request": {"level": "ERROR"},
        # With DEBUG on, Django logs every SQL statement with its parameters at DEBUG, and the
        # token lookup's parameter is the client's token: never below INFO, whatever LOG_LEVEL.
        "django.db.backends": {"level": "INFO"},
    },
}

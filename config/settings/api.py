"""The API: CORS, body limits, Django REST Framework, the request throttle, the cache, the
OpenAPI schema, uploads and long polls. Every variable read here is described in
docs/settings.md."""

from __future__ import annotations

from config.env import env_int, env_list, env_str

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
    # Two models have a status: a job's and a workflow's, each its own enum in the schema.
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "apps.jobs.models.JobStatus",
        "WorkflowStatusEnum": "apps.workflows.models.WorkflowStatus",
    },
}

# The largest file POST /api/v1/uploads accepts (413 above it).
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 20 * 1024 * 1024, minimum=1024)
# Long polls (GET /api/v1/jobs/{id}?wait=N) waiting at once per web process; past it a poll
# answers at once. Each holds a gunicorn thread, so keep it under WEB_THREADS.
JOB_WAIT_MAX_WAITERS = env_int("JOB_WAIT_MAX_WAITERS", max(1, env_int("WEB_THREADS", 4, minimum=1) // 2), minimum=0)

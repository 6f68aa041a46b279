"""Operations: metrics, alerts and their mail, retention, the control loop's leader
election, the admin's link to Flower, and logging. Every variable read here is described in
docs/settings.md."""

from __future__ import annotations

from config.env import env_bool, env_float, env_int, env_list, env_str

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

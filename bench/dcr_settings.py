"""Baseline 2's Django settings: the setup Django users build by hand, Celery with
django-celery-results keeping every task's state in PostgreSQL. Only that app is installed;
its tables are migrated into the bench database beside the platform's."""

import os

import dj_database_url

SECRET_KEY = os.environ.get("SECRET_KEY", "bench-dcr")
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django_celery_results"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The same connection settings as the platform's (persistent connections, health checks).
DATABASES = {
    "default": dj_database_url.parse(
        os.environ["DATABASE_URL"],
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}

CELERY_BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/4")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_BACKEND = "django-db"
CELERY_TASK_TRACK_STARTED = True  # a STARTED row, then the result: two writes per task
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

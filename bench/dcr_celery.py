"""Baseline 2's Celery app (bench.dcr_settings): results and states in PostgreSQL through
django-celery-results. Celery's Django fixup sets Django up in the worker."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.dcr_settings")

app = Celery("bench_dcr")
app.config_from_object("django.conf:settings", namespace="CELERY")


@app.task(name="bench.dcr.noop")
def noop(i: int) -> None:
    return None


def done() -> int:
    from django_celery_results.models import TaskResult

    return TaskResult.objects.filter(status="SUCCESS").count()


def reset() -> None:
    from django_celery_results.models import TaskResult

    TaskResult.objects.all().delete()

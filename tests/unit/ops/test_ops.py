from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from apps.core.redis import redis_client
from apps.jobs.models import Job
from apps.ops.alerts import queues_monitor
from tests.factories import JobFactory


def test_metrics_ask_for_the_token_when_one_is_configured(client, db, settings):
    settings.METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    answer = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain")
    assert b"# TYPE queue_depth gauge" in answer.content


def test_metrics_are_prometheus_text_without_a_token_by_default(client, db):
    body = client.get("/metrics").content.decode()
    for name in (
        "jobs_total",
        "queue_depth",
        "queue_oldest_job_age_seconds",
        "dead_letters",
        "dead_letter_oldest_age_seconds",
        "workers_alive",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in body


def test_a_backed_up_queue_raises_one_alert_per_period(db, settings, caplog):
    settings.QUEUE_AGE_ALERT_SECONDS = 60
    redis_client().delete("jobplatform:queue-age-alerted:low")
    old = JobFactory(queue="low", status="queued")
    Job.objects.filter(id=old.id).update(created_at=timezone.now() - timedelta(minutes=5))

    with caplog.at_level(logging.ERROR, logger="apps.ops.alerts"):
        first = queues_monitor()
        second = queues_monitor()

    assert first == {"alerts": 1}
    assert second == {"alerts": 0}
    alerts = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(alerts) == 1
    assert "queue low is backed up" in alerts[0]


def test_a_queue_whose_jobs_are_fresh_raises_no_alert(db, settings):
    settings.QUEUE_AGE_ALERT_SECONDS = 60
    redis_client().delete("jobplatform:queue-age-alerted:default")
    JobFactory(queue="default", status="queued")
    assert queues_monitor() == {"alerts": 0}

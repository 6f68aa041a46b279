from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core import context
from apps.core.logging import JsonFormatter, redact
from apps.core.redis import redis_client
from apps.jobs.models import Job
from apps.ops.alerts import queues_monitor
from tests.factories import JobFactory


def format_record(message: str, *args: object) -> dict:
    record = logging.LogRecord("some.logger", logging.WARNING, __file__, 1, message, args, None)
    return json.loads(JsonFormatter().format(record))


def test_a_log_line_is_one_json_object_with_the_request_and_job_it_is_about():
    with context.job_context(job="job-1", kind="diagnostics.noop", request="req-1"):
        entry = format_record("attempt %s started", 2)
    assert entry["message"] == "attempt 2 started"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "some.logger"
    assert (entry["job_id"], entry["kind"], entry["request_id"]) == ("job-1", "diagnostics.noop", "req-1")
    assert "job_id" not in format_record("outside any job")


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Token 46ebca04ce57ad43d76fc42f69bb08da70307bff",
        "token 46ebca04ce57ad43d76fc42f69bb",
        "connect password=hunter2 now",
        "url?secret=abc123",
    ],
)
def test_tokens_and_passwords_never_reach_a_log_line(text):
    assert redact(text).count("[redacted]") == 1
    for secret in ("46ebca04ce57ad43d76fc42f69bb", "hunter2", "abc123"):
        assert secret not in redact(text)


def test_every_response_carries_a_request_id_and_a_sane_one_from_the_client_is_kept(client, db):
    made_up = client.get("/healthz")["X-Request-ID"]
    assert len(made_up) == 32
    assert client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")["X-Request-ID"] == "abc-123"
    # Anything that could forge log lines is replaced.
    replaced = client.get("/healthz", HTTP_X_REQUEST_ID='x"\n{"level":"ERROR"}')["X-Request-ID"]
    assert len(replaced) == 32
    assert replaced.isalnum()


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

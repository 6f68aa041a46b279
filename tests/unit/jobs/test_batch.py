"""POST /api/v1/jobs/batch: up to 1,000 jobs, all or nothing, one transaction, one INSERT,
published together after the commit."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.utils import timezone

from apps.jobs import publish, signals
from apps.jobs.models import Job
from config.celery import app as celery_app
from tests.helpers.api import JOB_FIELDS, queued_job_ids

BATCH = "/api/v1/jobs/batch"
# Token lookup, the client's in-flight count (one per queue in the batch), savepoint, one
# INSERT for every job, release, and one UPDATE marking them all published.
BATCH_QUERIES_ONE_QUEUE = 6


def noop(**fields: Any) -> dict[str, Any]:
    return {"kind": "diagnostics.noop", "payload": {}, **fields}


def post_batch(api: Any, capture: Any, jobs: list[dict[str, Any]], **extra: Any) -> Any:
    with capture(execute=True):
        return api.post(BATCH, {"jobs": jobs}, format="json", **extra)


def test_a_batch_answers_202_with_every_job_in_the_order_given(api, user, settings, django_capture_on_commit_callbacks):
    settings.HIGH_PRIORITY_CLIENTS = ["*"]  # who may ask for high: tests/unit/jobs/test_fairness_defaults.py
    jobs = [noop(), {"kind": "diagnostics.sleep", "payload": {"seconds": 1}}, noop(priority="high")]

    response = post_batch(api, django_capture_on_commit_callbacks, jobs)

    assert response.status_code == 202
    answered = response.json()["jobs"]
    assert [j["kind"] for j in answered] == ["diagnostics.noop", "diagnostics.sleep", "diagnostics.noop"]
    assert all(set(j) >= JOB_FIELDS and j["status"] == "queued" for j in answered)
    assert answered[1]["links"]["self"] == f"http://testserver/api/v1/jobs/{answered[1]['id']}"
    stored = {str(j.id): j for j in Job.objects.filter(owner=user)}
    assert set(stored) == {j["id"] for j in answered}
    assert stored[answered[2]["id"]].queue == "high"
    assert all(j.published_at is not None for j in stored.values())
    assert set(queued_job_ids("default")) >= {answered[0]["id"], answered[1]["id"]}
    assert answered[2]["id"] in queued_job_ids("high")


def test_the_list_keeps_a_batchs_order(api, user, django_capture_on_commit_callbacks):
    answered = post_batch(api, django_capture_on_commit_callbacks, [noop() for _ in range(5)]).json()["jobs"]

    listed = [j["id"] for j in api.get("/api/v1/jobs").json()["results"]]

    assert listed == [j["id"] for j in reversed(answered)]


def test_a_scheduled_job_in_a_batch_waits_in_the_database(api, user, django_capture_on_commit_callbacks):
    run_at = timezone.now() + timedelta(hours=1)

    answered = post_batch(api, django_capture_on_commit_callbacks, [noop(run_at=run_at.isoformat()), noop()])
    later, now = (Job.objects.get(id=j["id"]) for j in answered.json()["jobs"])

    assert later.run_at == run_at
    assert later.published_at is None
    assert str(later.id) not in queued_job_ids("default")
    assert now.published_at is not None


def test_a_batch_of_1000_costs_a_fixed_number_of_queries(
    api, user, django_assert_num_queries, django_capture_on_commit_callbacks
):
    with django_assert_num_queries(BATCH_QUERIES_ONE_QUEUE), django_capture_on_commit_callbacks(execute=True):
        response = api.post(BATCH, {"jobs": [noop() for _ in range(1000)]}, format="json")

    assert response.status_code == 202
    assert len(response.json()["jobs"]) == 1000
    assert Job.objects.filter(owner=user, published_at__isnull=False).count() == 1000
    assert len(queued_job_ids("default")) >= 1000


def test_more_queues_in_a_batch_cost_no_more_queries(
    api, settings, django_assert_num_queries, django_capture_on_commit_callbacks
):
    settings.HIGH_PRIORITY_CLIENTS = ["*"]
    # Each queue is admission-checked; the client's in-flight count is read once (then cached).
    jobs = [noop(priority=p) for p in ("high", "default", "low") for _ in range(10)]

    with django_assert_num_queries(BATCH_QUERIES_ONE_QUEUE), django_capture_on_commit_callbacks(execute=True):
        response = api.post(BATCH, {"jobs": jobs}, format="json")

    assert response.status_code == 202


def test_followers_hear_of_the_whole_batch_once(api, django_capture_on_commit_callbacks):
    heard: list[list[Job]] = []

    def receiver(sender: Any, jobs: list[Job], **kwargs: Any) -> None:
        heard.append(jobs)

    signals.jobs_submitted.connect(receiver)
    try:
        post_batch(api, django_capture_on_commit_callbacks, [noop() for _ in range(3)])
    finally:
        signals.jobs_submitted.disconnect(receiver)

    assert [len(jobs) for jobs in heard] == [3]


# --- all or nothing ---------------------------------------------------------------------------


def test_a_batch_with_bad_jobs_is_refused_whole_naming_each_by_its_index(api, user):
    jobs = [
        noop(),
        {"kind": "no.such.kind", "payload": {}},
        noop(),
        {"kind": "diagnostics.sleep", "payload": {"seconds": -1}},
        {"payload": {}},
    ]

    response = api.post(BATCH, {"jobs": jobs}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_batch"
    assert [d["index"] for d in error["details"]] == [4]  # the field errors come first
    assert Job.objects.filter(owner=user).count() == 0

    jobs.pop()
    response = api.post(BATCH, {"jobs": jobs}, format="json")

    error = response.json()["error"]
    assert error["code"] == "invalid_batch"
    assert [(d["index"], d["code"]) for d in error["details"]] == [(1, "unknown_kind"), (3, "invalid_payload")]
    assert error["details"][1]["details"][0]["path"] == "seconds"
    assert "2 of 4 jobs are not valid" in error["message"]
    assert Job.objects.filter(owner=user).count() == 0


def test_a_batch_over_1000_jobs_is_refused_whole(api, user):
    response = api.post(BATCH, {"jobs": [noop() for _ in range(1001)]}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "batch_too_large"
    assert "at most 1000" in error["message"]
    assert error["details"] == {"max_jobs": 1000, "jobs": 1001}
    assert Job.objects.filter(owner=user).count() == 0


@pytest.mark.parametrize("body", [{}, {"jobs": []}, {"jobs": "x"}, {"jobs": [1, 2]}, [noop()]])
def test_a_batch_that_is_not_a_list_of_jobs_is_refused(api, body):
    response = api.post(BATCH, body, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_batch"


def test_a_batch_refuses_an_idempotency_key(api, user):
    response = api.post(BATCH, {"jobs": [noop()]}, format="json", HTTP_IDEMPOTENCY_KEY="k1")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "idempotency_not_supported"
    assert Job.objects.filter(owner=user).count() == 0


def test_admission_control_weighs_the_whole_batch(api, user, settings):
    settings.CLIENT_MAX_IN_FLIGHT = 10

    response = api.post(BATCH, {"jobs": [noop() for _ in range(11)]}, format="json")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "too_many_in_flight"
    assert int(response["Retry-After"]) >= 1
    assert Job.objects.filter(owner=user).count() == 0
    assert api.post(BATCH, {"jobs": [noop() for _ in range(10)]}, format="json").status_code == 202


def test_a_full_queue_refuses_the_batch(api, user, settings):
    settings.QUEUE_MAX_DEPTH = 5

    response = api.post(BATCH, {"jobs": [noop(priority="low") for _ in range(6)]}, format="json")

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "queue_full"
    assert Job.objects.filter(owner=user).count() == 0


# --- publishing -------------------------------------------------------------------------------


def raw_messages(queue: str) -> list[dict[str, Any]]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    finally:
        client.close()


def comparable(message: dict[str, Any]) -> dict[str, Any]:
    """A message without what differs between any two messages (ids, the delivery tag)."""
    message = json.loads(json.dumps(message))
    for key in ("id", "root_id"):
        message["headers"].pop(key)
    for key in ("correlation_id", "delivery_tag"):
        message["properties"].pop(key)
    return message


@pytest.fixture
def sent_events_setting() -> Any:
    """Set CELERY_TASK_SEND_SENT_EVENT for one test (Celery's settings refuse monkeypatch's undo)."""
    before = celery_app.conf.task_send_sent_event

    def set_to(value: bool) -> None:
        celery_app.conf.task_send_sent_event = value

    yield set_to
    celery_app.conf.task_send_sent_event = before


def sent_events(pubsub: Any) -> list[dict[str, Any]]:
    """The task-sent events heard so far (kombu's envelope around a base64 JSON body)."""
    events = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        if message["type"] == "pmessage":
            envelope = json.loads(message["data"])
            events.append({"envelope": envelope, "event": json.loads(base64.b64decode(envelope["body"]))})
    return events


@pytest.mark.parametrize("path", ["redis-pipeline", "kombu-batch"])
def test_the_batch_publisher_sends_the_messages_and_events_celery_would(db, monkeypatch, sent_events_setting, path):
    if path == "kombu-batch":  # the path for brokers other than Redis
        monkeypatch.setattr(publish, "_publish_redis_pipeline", publish._publish_kombu_batch)
    sent_events_setting(True)  # so their format is held equal too
    job_a, job_b = (str(uuid.uuid4()) for _ in range(2))
    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("*celeryev*")
    pubsub.get_message(timeout=1)
    try:
        celery_app.send_task("diagnostics.noop", args=[job_a], queue="low", headers={"request_id": "r1"})
        assert publish.publish_jobs_rollback_unsafe([(job_b, "diagnostics.noop", "low", "r1")]) == [job_b]
        event_by_celery, event_by_us = sent_events(pubsub)
    finally:
        pubsub.close()
        client.close()

    by_us, by_celery = raw_messages("low")[:2]  # LPUSH: newest first
    assert by_us["headers"]["id"] == by_us["headers"]["root_id"] == by_us["properties"]["correlation_id"]
    assert by_us["headers"]["id"] != by_celery["headers"]["id"]
    body_by_us, body_by_celery = (json.loads(base64.b64decode(m["body"])) for m in (by_us, by_celery))
    assert body_by_us[0] == [job_b]
    assert body_by_us[1:] == body_by_celery[1:]
    assert by_us["headers"]["argsrepr"] == f"['{job_b}']"
    by_celery["body"] = by_us["body"]
    by_celery["headers"]["argsrepr"] = by_us["headers"]["argsrepr"]
    assert comparable(by_us) == comparable(by_celery)

    assert event_by_us["event"]["uuid"] == by_us["headers"]["id"]
    assert event_by_us["event"]["args"] == f"['{job_b}']"
    for event in (event_by_us, event_by_celery):
        for key in ("uuid", "root_id", "args", "timestamp", "clock"):
            event["event"].pop(key)
        event["envelope"].pop("body")
        event["envelope"]["properties"].pop("delivery_tag")
    assert event_by_us == event_by_celery


def test_when_the_broker_is_away_a_batch_is_still_accepted_for_the_relay(
    api, user, monkeypatch, django_capture_on_commit_callbacks, caplog
):
    def unreachable(batch: Any) -> None:
        raise ConnectionError("Redis is away")

    monkeypatch.setattr(publish, "_publish_all", unreachable)

    response = post_batch(api, django_capture_on_commit_callbacks, [noop(), noop()])

    assert response.status_code == 202
    assert Job.objects.filter(owner=user, published_at__isnull=True).count() == 2
    assert "the relay will publish them" in caplog.text


def test_with_redis_stopped_a_batch_is_accepted_at_once_and_left_for_the_relay(own_redis, user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    own_redis.stop()

    started = time.monotonic()
    response = client.post(BATCH, {"jobs": [noop() for _ in range(3)]}, format="json")

    assert response.status_code == 202
    # Not a request's cost (a loaded machine may take a second): a publish that kept retrying
    # the stopped Redis would hang here, where a bounded one gives up within a second.
    assert time.monotonic() - started < 5
    assert Job.objects.filter(owner=user, published_at__isnull=True).count() == 3


def test_without_sent_events_only_the_task_messages_are_sent(db, sent_events_setting):
    sent_events_setting(False)
    client = redis.Redis.from_url(settings.REDIS_URL)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("*celeryev*")
    pubsub.get_message(timeout=1)
    job_id = str(uuid.uuid4())
    try:
        assert publish.publish_jobs_rollback_unsafe([(job_id, "diagnostics.noop", "low", "")]) == [job_id]
        assert sent_events(pubsub) == []
    finally:
        pubsub.close()
        client.close()
    assert json.loads(base64.b64decode(raw_messages("low")[0]["body"]))[0] == [job_id]


SIMPLE_BATCHES = [
    [noop()],
    [{"kind": "diagnostics.noop"}, {"kind": "diagnostics.sleep", "payload": {"seconds": 0.5}}],
    [noop() for _ in range(1000)],
]
NOT_SIMPLE_BATCHES = [
    [],  # DRF's allow_empty
    [noop() for _ in range(1001)],  # its max_length
    [noop(priority="high")],  # any other field
    [{"kind": " diagnostics.noop "}],  # CharField trims
    [{"kind": "no.such.kind"}],  # services names the bad kind
    [{"kind": "diagnostics.noop", "payload": []}],
    [{"kind": "diagnostics.noop", "payload": None}],
    [{"kind": 7}],
    ["diagnostics.noop"],
    [noop(), {"kind": "diagnostics.noop", "payload": "x"}],
]


@pytest.mark.parametrize("jobs", SIMPLE_BATCHES, ids=["one", "two-kinds", "thousand"])
def test_a_simple_batch_skips_drfs_validation_with_drfs_result(jobs):
    from apps.jobs.serializers import JobBatchSubmitInput

    drf = JobBatchSubmitInput(data={"jobs": jobs})
    assert drf.is_valid(), drf.errors
    assert JobBatchSubmitInput.simple_jobs({"jobs": jobs}) == [dict(job) for job in drf.validated_data["jobs"]]


@pytest.mark.parametrize("jobs", NOT_SIMPLE_BATCHES)
def test_any_other_batch_goes_through_drf(jobs):
    from apps.jobs.serializers import JobBatchSubmitInput

    assert JobBatchSubmitInput.simple_jobs({"jobs": jobs}) is None


@pytest.mark.parametrize(
    "job",
    [noop(), {"kind": "diagnostics.noop"}, {"kind": "diagnostics.sleep", "payload": {"seconds": 1, "x": [None]}}],
)
def test_a_simple_submit_skips_drfs_validation_with_drfs_result(job):
    from apps.jobs.serializers import JobSubmitInput

    drf = JobSubmitInput(data=job)
    assert drf.is_valid(), drf.errors
    assert JobSubmitInput.simple_job(job) == dict(drf.validated_data)


@pytest.mark.parametrize(
    "job",
    [
        noop(priority="low"),
        noop(max_attempts=1),
        noop(callback_url="https://example.com/hook"),
        {"kind": "diagnostics.noop "},
        {"kind": ""},
        {"kind": "x" * 101},
        {"kind": "no.such.kind", "payload": {}},
        {"kind": "diagnostics.noop", "payload": [1]},
        {"payload": {}},
        [noop()],
        None,
    ],
)
def test_any_other_submit_goes_through_drf(job):
    from apps.jobs.serializers import JobSubmitInput

    assert JobSubmitInput.simple_job(job) is None

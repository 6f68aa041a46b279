"""Idempotency-Key on job submission, as a client sees it over the API: one job per (client,
key) for 24 hours, a replay for the same request, a refusal for a different one."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.jobs import lifecycle
from apps.jobs.models import IdempotencyKey, Job, JobStatus
from apps.jobs.reconciler import redis_client
from tests.factories import UserFactory

JOBS = "/api/v1/jobs"
BODY: dict[str, Any] = {"kind": "diagnostics.flaky", "payload": {"fail_times": 0}}
# A replay is one token lookup (authentication) and one read of the key with its job.
REPLAY_QUERIES = 2


def submit(client: APIClient, key: str, body: dict[str, Any] | None = None) -> Any:
    return client.post(JOBS, BODY if body is None else body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def published(job_id: str, queue: str = "default") -> int:
    """How many messages for this job wait on its queue in the private Redis."""
    count = 0
    for raw in redis_client().lrange(queue, 0, -1):
        args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
        count += args == [job_id]
    return count


def error_code(response: Any) -> str:
    return response.json()["error"]["code"]


# --- one key, one job ----------------------------------------------------------------------------


def test_a_first_submission_with_a_key_makes_a_job_and_is_not_a_replay(api, user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(api, "order-1")

    assert response.status_code == 202
    assert response.headers["Idempotent-Replayed"] == "false"
    job_id = response.json()["id"]
    assert response.headers["Location"].endswith(f"{JOBS}/{job_id}")
    record = IdempotencyKey.objects.get(owner=user, key="order-1")
    assert (str(record.job_id), record.status_code) == (job_id, 202)
    assert published(job_id) == 1


def test_the_same_key_and_request_replay_the_original_job(api, user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = submit(api, "order-1")
        again = submit(api, "order-1")

    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert Job.objects.filter(owner=user).count() == 1
    assert IdempotencyKey.objects.filter(owner=user).count() == 1
    assert published(first.json()["id"]) == 1  # the replay published nothing


def test_a_replay_shows_the_job_as_it_is_now(api):
    job_id = submit(api, "order-1").json()["id"]
    assert lifecycle.job_claim(job_id=job_id, worker="w") is not None

    again = submit(api, "order-1")

    assert (again.json()["id"], again.json()["status"], again.json()["attempts"]) == (job_id, JobStatus.RUNNING, 1)


@pytest.mark.parametrize(
    "change",
    [
        {"payload": {"fail_times": 1}},
        {"kind": "diagnostics.sleep", "payload": {"seconds": 1}},
        {"priority": "high"},
        {"max_attempts": 2},
        {"run_at": "2099-01-01T00:00:00Z"},
    ],
    ids=["payload", "kind", "priority", "max_attempts", "run_at"],
)
def test_the_same_key_with_a_different_request_is_refused_with_422(api, user, change):
    first = submit(api, "order-1")

    response = submit(api, "order-1", {**BODY, **change})

    assert response.status_code == 422
    assert error_code(response) == "idempotency_key_reused"
    assert response.json()["error"]["details"] == {"job_id": first.json()["id"]}
    assert "Idempotent-Replayed" not in response.headers
    assert [str(i) for i in Job.objects.filter(owner=user).values_list("id", flat=True)] == [first.json()["id"]]


def test_keys_belong_to_one_client(api, user):
    other = UserFactory()
    other_api = client_for(other)

    mine = submit(api, "order-1")
    theirs = submit(other_api, "order-1", {**BODY, "payload": {"fail_times": 3}})

    assert (mine.status_code, theirs.status_code) == (202, 202)
    assert theirs.headers["Idempotent-Replayed"] == "false"
    assert mine.json()["id"] != theirs.json()["id"]
    assert str(IdempotencyKey.objects.get(owner=user, key="order-1").job_id) == mine.json()["id"]
    assert str(IdempotencyKey.objects.get(owner=other, key="order-1").job_id) == theirs.json()["id"]
    assert Job.objects.get(id=theirs.json()["id"]).owner == other


# --- the key itself ------------------------------------------------------------------------------


def test_a_key_of_255_characters_is_accepted(api, user):
    key = "k" * 255

    response = submit(api, key)

    assert response.status_code == 202
    assert IdempotencyKey.objects.get(owner=user).key == key


@pytest.mark.parametrize("key", ["k" * 256, ""], ids=["256 characters", "empty"])
def test_a_key_too_long_or_empty_is_refused_with_400(api, key):
    response = submit(api, key)

    assert response.status_code == 400
    assert error_code(response) == "invalid_idempotency_key"
    assert not Job.objects.exists()
    assert not IdempotencyKey.objects.exists()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"kind": "diagnostics.flaky", "payload": {"fail_times": "many"}}, "invalid_payload"),
        ({"kind": "no.such.kind", "payload": {}}, "unknown_kind"),
        ({"kind": "diagnostics.flaky", "payload": {"fail_times": 0}, "max_attempts": 6}, "invalid_max_attempts"),
        ({"kind": "diagnostics.flaky", "payload": {"fail_times": 0}, "priority": "urgent"}, "invalid_input"),
    ],
    ids=["payload", "kind", "max_attempts", "priority"],
)
def test_an_invalid_request_with_a_key_is_refused_and_the_key_stays_free(api, user, body, code):
    refused = submit(api, "order-1", body)

    assert refused.status_code == 400
    assert error_code(refused) == code
    assert not IdempotencyKey.objects.exists()
    assert not Job.objects.exists()
    accepted = submit(api, "order-1")
    assert accepted.status_code == 202
    assert accepted.headers["Idempotent-Replayed"] == "false"


# --- expiry --------------------------------------------------------------------------------------


def age_key(user: Any, key: str, age: timedelta) -> None:
    assert IdempotencyKey.objects.filter(owner=user, key=key).update(created_at=timezone.now() - age) == 1


def test_a_key_younger_than_24_hours_still_replays(api, user):
    first = submit(api, "order-1")
    age_key(user, "order-1", timedelta(hours=23))

    again = submit(api, "order-1")

    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]


@pytest.mark.parametrize(
    "body", [BODY, {**BODY, "payload": {"fail_times": 2}}], ids=["same request", "different request"]
)
def test_a_key_older_than_24_hours_is_free_for_a_new_job(api, user, body):
    first = submit(api, "order-1")
    age_key(user, "order-1", timedelta(hours=25))

    again = submit(api, "order-1", body)

    assert again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "false"
    assert again.json()["id"] != first.json()["id"]
    assert Job.objects.filter(owner=user).count() == 2
    (record,) = IdempotencyKey.objects.filter(owner=user, key="order-1")
    assert str(record.job_id) == again.json()["id"]
    assert submit(api, "order-1", body).json()["id"] == again.json()["id"]


# --- the constraint and the cost -----------------------------------------------------------------


def test_the_database_refuses_a_second_row_for_one_client_and_key(user):
    job = lifecycle.job_submit(owner=user, kind="diagnostics.noop", payload={})
    IdempotencyKey.objects.create(owner=user, key="order-1", fingerprint="a" * 64, job=job)
    IdempotencyKey.objects.create(owner=UserFactory(), key="order-1", fingerprint="a" * 64, job=job)

    with pytest.raises(IntegrityError), transaction.atomic():
        IdempotencyKey.objects.create(owner=user, key="order-1", fingerprint="b" * 64, job=job)

    assert IdempotencyKey.objects.filter(key="order-1").count() == 2


def test_a_replay_costs_two_queries(api, django_assert_num_queries):
    first = submit(api, "order-1")

    with django_assert_num_queries(REPLAY_QUERIES):
        again = submit(api, "order-1")

    assert again.json()["id"] == first.json()["id"]


def test_a_replay_in_the_service_costs_one_query(user, django_assert_num_queries):
    arguments = {"owner": user, "idempotency_key": "order-1", "kind": "diagnostics.noop", "payload": {}}
    first = lifecycle.job_submit_idempotent(**arguments)

    with django_assert_num_queries(1):
        again = lifecycle.job_submit_idempotent(**arguments)

    assert (again.replayed, again.job.id, again.status_code) == (True, first.job.id, 202)

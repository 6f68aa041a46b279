"""Webhooks end to end: a real worker and beat run the job, then its delivery job, which
POSTs to a real HTTP server in this process; retries and the dead letter come from the
platform."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.deadletters.models import DeadLetter
from apps.jobs import lifecycle
from apps.jobs.models import Job, JobAttempt
from apps.webhooks.signing import verify_signature
from tests.helpers.webhooks import documented_signature
from tests.integration.helpers import wait_terminal
from tests.processes import wait_for

pytestmark = pytest.mark.integration

DELIVER = "webhooks.deliver"


@pytest.fixture
def stack(platform, settings):
    """Worker and beat allowed to call 127.0.0.1, and this process allowed to accept it."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
    platform.worker(env={"WEBHOOK_ALLOW_PRIVATE": "1"})
    platform.beat()
    return platform


def client_for(username: str) -> APIClient:
    user = get_user_model().objects.create(username=username)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def submit(client: APIClient, kind: str, payload: dict[str, Any], **extra: Any) -> str:
    response = client.post("/api/v1/jobs", {"kind": kind, "payload": payload, **extra}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def delivery_of(job_id: str) -> Job:
    return wait_for(
        lambda: Job.objects.filter(kind=DELIVER, payload__job_id=job_id).first(),
        timeout=30,
        what=f"the delivery job for {job_id}",
    )


def test_a_job_with_a_callback_url_delivers_a_signed_post_that_verifies(stack, receiver):
    client = client_for("webhook-client")

    job_id = submit(client, "diagnostics.noop", {}, callback_url=receiver.url)

    wait_for(receiver.posts, timeout=30, what="the webhook POST")
    [request] = receiver.posts()
    secret = client.get("/api/v1/webhook-secret").json()["secret"]
    timestamp = request.headers["Webhook-Timestamp"]
    signature = request.headers["Webhook-Signature"]
    assert signature == documented_signature(secret, timestamp, request.body)
    assert verify_signature(secret, timestamp, request.body, signature)
    job = Job.objects.get(id=job_id)
    assert json.loads(request.body) == {
        "event": "job.finished",
        "job": {
            "id": job_id,
            "kind": "diagnostics.noop",
            "status": "succeeded",
            "attempts": 1,
            "result": {},
            "error": None,
            "created_at": job.created_at.isoformat().replace("+00:00", "Z"),
            "started_at": job.started_at.isoformat().replace("+00:00", "Z"),
            "finished_at": job.finished_at.isoformat().replace("+00:00", "Z"),
        },
    }
    delivery = delivery_of(job_id)
    assert request.headers["Webhook-Id"] == str(delivery.id)
    assert request.headers["User-Agent"] == "jobplatform-webhooks/1"
    delivery = wait_terminal([delivery.id], timeout=30)[str(delivery.id)]
    assert delivery.status == "succeeded"
    assert delivery.result["status_code"] == 200
    assert delivery.owner_id == job.owner_id
    # The delivery is one of the client's jobs, and announces nothing itself.
    listed = client.get("/api/v1/jobs", {"kind": DELIVER}).json()["results"]
    assert [j["id"] for j in listed] == [str(delivery.id)]
    assert Job.objects.filter(kind=DELIVER).count() == 1


def test_a_receiver_failing_twice_gets_three_recorded_attempts_and_the_delivery_succeeds(stack, receiver):
    receiver.script = [500, 500, 200]
    client = client_for("retry-client")

    job_id = submit(client, "diagnostics.noop", {}, callback_url=receiver.url)

    delivery = delivery_of(job_id)
    delivery = wait_terminal([delivery.id], timeout=60)[str(delivery.id)]
    assert delivery.status == "succeeded"
    assert delivery.attempts == 3
    history = list(JobAttempt.objects.filter(job_id=delivery.id).order_by("number"))
    assert [a.outcome for a in history] == ["failed", "failed", "succeeded"]
    assert [a.error_type for a in history] == ["RetryableError", "RetryableError", ""]
    assert "answered 500" in history[0].error_message
    assert all(a.retry_at is not None and a.retry_at > a.finished_at for a in history[:2])
    posts = receiver.posts()
    assert len(posts) == 3
    secret = client.get("/api/v1/webhook-secret").json()["secret"]
    for post in posts:
        assert post.headers["Webhook-Id"] == str(delivery.id)  # one id across retries
        assert verify_signature(secret, post.headers["Webhook-Timestamp"], post.body, post.headers["Webhook-Signature"])
    assert not DeadLetter.objects.exists()


def test_a_receiver_that_always_fails_leaves_the_delivery_failed_with_a_dead_letter(stack, receiver):
    receiver.script = [500]
    client = client_for("dead-letter-client")
    job_id = submit(client, "diagnostics.noop", {})
    assert wait_terminal([job_id], timeout=30)[job_id].status == "succeeded"

    # The kind allows 12 attempts (minutes of backoff); the platform may ask for fewer. The
    # delivery kind is internal (a client submitting it gets 400 unknown_kind), so it is made
    # here as the webhooks app makes it, through the service.
    owner = get_user_model().objects.get(username="dead-letter-client")
    with transaction.atomic():
        delivery_id = str(
            lifecycle.job_submit(
                owner=owner,
                kind=DELIVER,
                payload={"job_id": job_id, "url": receiver.url, "event": "job.finished"},
                max_attempts=2,
            ).id
        )

    delivery = wait_terminal([delivery_id], timeout=60)[delivery_id]
    assert delivery.status == "failed"
    assert delivery.attempts == 2
    assert delivery.error_type == "RetryableError"
    letter = DeadLetter.objects.get(job_id=delivery_id)
    assert letter.kind == DELIVER
    assert [e["outcome"] for e in letter.errors] == ["failed", "failed"]
    assert len(receiver.posts()) == 2
    assert Job.objects.filter(kind=DELIVER).count() == 1  # a failed delivery does not announce itself

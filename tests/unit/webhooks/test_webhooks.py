"""Webhooks: the signature a receiver verifies, the client's secret over the API, callback
URLs refused at submit, the delivery job made when a job ends, and the delivery handler
against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.core.errors import TooManyRequests
from apps.jobs import lifecycle
from apps.jobs.models import Job, JobStatus
from apps.jobs.registry import PermanentError, RetryableError, registry
from apps.jobs.signals import job_finishing
from apps.webhooks import services
from apps.webhooks.models import WebhookSecret
from apps.webhooks.signing import signature_header, verify_signature
from tests.conftest import json_roundtrip
from tests.factories import JobFactory, UserFactory
from tests.helpers.webhooks import documented_signature
from tests.processes import free_port
from workers.kinds.webhooks import deliver

JOBS = "/api/v1/jobs"
SECRET_URL = "/api/v1/webhook-secret"
ROTATE_URL = "/api/v1/webhook-secret/rotate"


# --- a real receiver ------------------------------------------------------------------------


@pytest.fixture
def allow_private(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    return settings


@dataclass
class HandlerContext:
    """What the runtime hands a handler, for calling it directly."""

    job_id: str
    attempt: int = 1

    @property
    def idempotency_key(self) -> str:
        return f"job-{self.job_id}"

    def progress(self, percent: float, message: str = "") -> None:
        pass

    def is_cancelled(self) -> bool:
        return False

    def check_cancelled(self) -> None:
        pass

    def step(self, name: str, effect: Any) -> Any:
        return effect()


def finished_job(owner: Any, **fields: Any) -> Job:
    now = timezone.now()
    values = {
        "status": JobStatus.SUCCEEDED,
        "attempts": 1,
        "result": {"answer": 42},
        "started_at": now - timedelta(seconds=2),
        "finished_at": now,
        **fields,
    }
    return JobFactory(owner=owner, **values)


def delivery_for(job: Job, url: str, *, owner: Any = None) -> tuple[HandlerContext, dict[str, Any]]:
    """A delivery job row (as the receiver of job_finishing makes it), its context and its
    payload as it crosses the broker."""
    payload = {"job_id": str(job.id), "url": url, "event": "job.finished"}
    delivery = JobFactory(
        owner=owner or job.owner, kind=services.DELIVER_KIND, payload=payload, queue="high", max_attempts=12
    )
    return HandlerContext(job_id=str(delivery.id)), json_roundtrip(payload)


def client_for(user: Any) -> APIClient:
    from rest_framework.authtoken.models import Token

    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


# --- the signature ----------------------------------------------------------------------------

SECRET = "s3cret-for-tests"
BODY = b'{"event":"job.finished","job":{"id":"x"}}'


def test_a_signature_made_with_the_documented_algorithm_verifies():
    now = int(time.time())
    header = documented_signature(SECRET, str(now), BODY)

    assert signature_header(SECRET, now, BODY) == header
    assert verify_signature(SECRET, str(now), BODY, header)
    assert verify_signature(SECRET, now, BODY.decode(), header)


def test_a_tampered_body_does_not_verify():
    now = int(time.time())
    header = signature_header(SECRET, now, BODY)

    assert not verify_signature(SECRET, str(now), BODY.replace(b'"x"', b'"y"'), header)
    assert not verify_signature(SECRET, str(now), BODY + b" ", header)


def test_a_signature_under_another_secret_does_not_verify():
    now = int(time.time())
    header = signature_header("another-secret", now, BODY)

    assert not verify_signature(SECRET, str(now), BODY, header)


def test_the_timestamp_is_signed_so_changing_it_breaks_the_signature():
    now = int(time.time())
    header = signature_header(SECRET, now, BODY)

    assert not verify_signature(SECRET, str(now - 1), BODY, header)


@pytest.mark.parametrize("age", [301, -301, 86_400])
def test_a_stale_or_future_timestamp_does_not_verify(age):
    now = time.time()
    signed_at = int(now) - age
    header = signature_header(SECRET, signed_at, BODY)

    assert not verify_signature(SECRET, str(signed_at), BODY, header, now=now)
    assert verify_signature(SECRET, str(signed_at), BODY, header, tolerance=abs(age) + 5, now=now)


@pytest.mark.parametrize(
    ("timestamp", "header"),
    [
        ("not-a-number", None),
        (None, ""),
        (None, "v1="),
        (None, "garbage"),
        (None, "v0={hex}"),
        (None, "{hex}"),
    ],
)
def test_a_malformed_header_or_timestamp_does_not_verify(timestamp, header):
    now = int(time.time())
    good = signature_header(SECRET, now, BODY)
    hex_part = good.removeprefix("v1=")
    header = good if header is None else header.format(hex=hex_part)

    assert not verify_signature(SECRET, timestamp or str(now), BODY, header)


def test_any_one_of_several_v1_signatures_may_match():
    now = int(time.time())
    old = signature_header("old-secret", now, BODY)
    new = signature_header(SECRET, now, BODY)

    assert verify_signature(SECRET, str(now), BODY, f"{old} {new}")
    assert verify_signature(SECRET, str(now), BODY, f"{old},{new}")


# --- the secret over the API -------------------------------------------------------------------


def test_the_secret_is_made_on_first_read_and_stays_the_same(api, user):
    first = api.get(SECRET_URL)
    second = api.get(SECRET_URL)

    assert first.status_code == 200
    assert first["Cache-Control"] == "no-store"
    body = first.json()
    assert set(body) == {"secret", "created_at", "rotated_at"}
    assert len(body["secret"]) >= 43  # secrets.token_urlsafe(32)
    assert body["rotated_at"] is None
    assert second.json()["secret"] == body["secret"]
    assert WebhookSecret.objects.get(owner=user).secret == body["secret"]


def test_each_client_sees_only_its_own_secret(db):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")

    alices = client_for(alice).get(SECRET_URL).json()["secret"]
    bobs = client_for(bob).get(SECRET_URL).json()["secret"]

    assert alices != bobs
    assert WebhookSecret.objects.get(owner=alice).secret == alices
    assert WebhookSecret.objects.get(owner=bob).secret == bobs


def test_rotating_replaces_the_secret(api, user):
    before = api.get(SECRET_URL).json()

    rotated = api.post(ROTATE_URL)

    assert rotated.status_code == 200
    assert rotated["Cache-Control"] == "no-store"
    assert rotated.json()["secret"] != before["secret"]
    assert rotated.json()["rotated_at"] is not None
    assert api.get(SECRET_URL).json()["secret"] == rotated.json()["secret"]
    assert WebhookSecret.objects.filter(owner=user).count() == 1


def test_rotating_before_any_read_makes_a_secret(api, user):
    response = api.post(ROTATE_URL)

    assert response.status_code == 200
    assert WebhookSecret.objects.get(owner=user).secret == response.json()["secret"]


@pytest.mark.parametrize(("method", "path"), [("get", SECRET_URL), ("post", ROTATE_URL)])
def test_an_anonymous_request_for_the_secret_answers_401(db, method, path):
    response = getattr(APIClient(), method)(path)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert not WebhookSecret.objects.exists()


def test_the_admin_shows_a_secret_masked_and_can_rotate_it(admin_client, user):
    record = services.webhook_secret_get_or_create(owner_id=user.pk)
    secret = record.secret

    listing = admin_client.get("/admin/webhooks/webhooksecret/")
    detail = admin_client.get(f"/admin/webhooks/webhooksecret/{record.pk}/change/")

    for page in (listing, detail):
        assert page.status_code == 200
        assert secret not in page.content.decode()
        assert secret[-4:] in page.content.decode()
    response = admin_client.post(
        "/admin/webhooks/webhooksecret/", {"action": "rotate", "_selected_action": [record.pk]}, follow=True
    )
    assert response.status_code == 200
    record.refresh_from_db()
    assert record.secret != secret
    assert record.rotated_at is not None


# --- callback URLs refused at submit ------------------------------------------------------------


def submit(api: APIClient, callback_url: str) -> Any:
    return api.post(JOBS, {"kind": "diagnostics.noop", "payload": {}, "callback_url": callback_url}, format="json")


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://127.0.0.1:8000/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://[::1]/hook",
        "http://localhost/hook",
        "ftp://files.example.com/hook",
    ],
)
def test_an_internal_address_or_a_non_http_scheme_is_refused_at_submit(api, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE = False

    response = submit(api, url)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "unsafe_callback_url"
    assert not Job.objects.exists()


def test_a_file_url_is_refused_at_submit(api, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False

    response = submit(api, "file:///etc/passwd")

    assert response.status_code == 400, response.content
    # Today the submit serializer's URLField refuses it (invalid_input, naming the field)
    # before the SSRF check would (unsafe_callback_url); either way it never becomes a job.
    error = response.json()["error"]
    assert error["code"] in {"unsafe_callback_url", "invalid_input"}
    assert "callback_url" in json.dumps(error)
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/", "http://metadata.google.internal/", "http://[fd00:ec2::254]/"],
)
def test_a_metadata_address_is_refused_even_when_private_addresses_are_allowed(api, allow_private, url):
    response = submit(api, url)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "unsafe_callback_url"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/hook", "http://10.1.2.3/hook"])
def test_a_private_address_is_accepted_when_webhook_allow_private_is_set(api, allow_private, url):
    response = submit(api, url)

    assert response.status_code == 202, response.content
    assert Job.objects.get(id=response.json()["id"]).callback_url == url


def test_a_public_address_is_accepted(api, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False

    response = submit(api, "https://8.8.8.8/hooks?token=abc")

    assert response.status_code == 202, response.content


# --- a finished job gets its delivery job ---------------------------------------------------------


def test_a_job_that_ends_with_a_callback_url_gets_a_published_delivery_job_for_its_owner(
    user, allow_private, django_capture_on_commit_callbacks
):
    job = JobFactory(owner=user, callback_url="http://127.0.0.1:9/hook", request_id="req-1")

    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.job_cancel(job=job)

    delivery = Job.objects.get(kind=services.DELIVER_KIND)
    assert delivery.owner == user
    assert delivery.payload == {"job_id": str(job.id), "url": "http://127.0.0.1:9/hook", "event": "job.finished"}
    # An I/O-bound kind: on the I/O queue of its priority, which worker-io consumes.
    assert (delivery.priority, delivery.queue) == ("high", "io_high")
    assert delivery.max_attempts == registry.get(services.DELIVER_KIND).max_attempts
    assert delivery.callback_url == ""
    assert delivery.request_id == "req-1"
    assert delivery.published_at is not None  # it reached the broker after the commit


def test_no_delivery_is_made_without_a_callback_url_nor_for_a_delivery_itself(user, django_capture_on_commit_callbacks):
    plain = JobFactory(owner=user)
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.job_cancel(job=plain)

    job_finishing.send(
        sender=Job,
        job_id=str(plain.id),
        kind=services.DELIVER_KIND,
        status="failed",
        callback_url="http://127.0.0.1:9/hook",
        duration_ms=5,
    )

    assert not Job.objects.filter(kind=services.DELIVER_KIND).exists()


def test_a_webhook_is_not_lost_when_its_client_is_at_its_in_flight_limit(
    user, settings, allow_private, django_capture_on_commit_callbacks
):
    settings.CLIENT_MAX_IN_FLIGHT = 1
    JobFactory(owner=user)  # in flight: the client is at its limit
    with pytest.raises(TooManyRequests):
        lifecycle.job_submit(owner=user, kind="diagnostics.noop", payload={})
    job = JobFactory(owner=user, callback_url="http://127.0.0.1:9/hook")

    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.job_cancel(job=job)

    delivery = Job.objects.get(kind=services.DELIVER_KIND)
    assert delivery.payload["job_id"] == str(job.id)
    assert delivery.status == JobStatus.QUEUED
    assert delivery.published_at is not None


def test_a_delivery_that_cannot_be_made_is_logged_and_does_not_raise(db, caplog):
    missing = str(uuid.uuid4())

    with caplog.at_level(logging.ERROR, logger="apps.webhooks.receivers"):
        job_finishing.send(
            sender=Job,
            job_id=missing,
            kind="diagnostics.noop",
            status="succeeded",
            callback_url="http://127.0.0.1:9/hook?token=private",
            duration_ms=5,
        )

    assert f"job {missing} (diagnostics.noop): could not create its webhook delivery" in caplog.text
    assert "token=private" not in caplog.text
    assert not Job.objects.filter(kind=services.DELIVER_KIND).exists()


# --- the delivery handler against a real receiver -------------------------------------------------


def test_a_2xx_answer_delivers_a_signed_post_that_verifies_with_the_documented_algorithm(user, allow_private, receiver):
    job = finished_job(user)
    ctx, payload = delivery_for(job, receiver.url)

    result = deliver(ctx, payload)

    assert result["status_code"] == 200
    assert json_roundtrip(result) == result
    [request] = receiver.posts()
    assert request.path == "/hooks/jobs?token=abc"
    headers = request.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "jobplatform-webhooks/1"
    assert headers["Webhook-Id"] == ctx.job_id
    assert headers["Host"] == f"127.0.0.1:{receiver.port}"
    secret = WebhookSecret.objects.get(owner=user).secret
    timestamp = headers["Webhook-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    assert headers["Webhook-Signature"] == documented_signature(secret, timestamp, request.body)
    assert verify_signature(secret, timestamp, request.body, headers["Webhook-Signature"])
    # Compact JSON with sorted keys: the bytes on the wire are the bytes that were signed.
    document = json.loads(request.body)
    assert request.body == json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
    assert document == {
        "event": "job.finished",
        "job": {
            "id": str(job.id),
            "kind": "diagnostics.noop",
            "status": "succeeded",
            "attempts": 1,
            "result": {"answer": 42},
            "error": None,
            "created_at": job.created_at.isoformat().replace("+00:00", "Z"),
            "started_at": job.started_at.isoformat().replace("+00:00", "Z"),
            "finished_at": job.finished_at.isoformat().replace("+00:00", "Z"),
        },
    }


def test_a_failed_job_is_described_with_its_error(user, allow_private, receiver):
    job = finished_job(
        user, status=JobStatus.FAILED, result=None, error_type="RetryableError", error_message="it broke"
    )
    ctx, payload = delivery_for(job, receiver.url)

    deliver(ctx, payload)

    document = json.loads(receiver.posts()[0].body)
    assert document["job"]["status"] == "failed"
    assert document["job"]["result"] is None
    assert document["job"]["error"] == {"type": "RetryableError", "message": "it broke"}


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, RetryableError),
        (502, RetryableError),
        (503, RetryableError),
        (408, RetryableError),
        (429, RetryableError),
        (400, PermanentError),
        (401, PermanentError),
        (404, PermanentError),
        (410, PermanentError),
        (422, PermanentError),
    ],
)
def test_the_receivers_answer_decides_whether_the_delivery_is_retried(user, allow_private, receiver, status, error):
    receiver.script = [status]
    ctx, payload = delivery_for(finished_job(user), receiver.url)

    with pytest.raises(error) as raised:
        deliver(ctx, payload)

    # The attempt's record says what the receiver answered, without the URL's query.
    assert f"answered {status}" in str(raised.value)
    assert "token=abc" not in str(raised.value)
    assert len(receiver.posts()) == 1


def test_a_redirect_is_not_followed(user, allow_private, receiver):
    receiver.script = [302]
    ctx, payload = delivery_for(finished_job(user), receiver.url)

    with pytest.raises(RetryableError, match="redirects are not followed"):
        deliver(ctx, payload)

    assert [r.path for r in receiver.requests] == ["/hooks/jobs?token=abc"]


def test_a_receiver_that_does_not_answer_in_time_is_retried(user, allow_private, receiver):
    allow_private.WEBHOOK_TIMEOUT_SECONDS = 0.3
    receiver.delay = 5.0
    ctx, payload = delivery_for(finished_job(user), receiver.url)
    started = time.monotonic()

    with pytest.raises(RetryableError, match=r"no answer within 0\.3 s"):
        deliver(ctx, payload)

    assert time.monotonic() - started < 4  # gave up well before the receiver's 5 s answer


def test_a_refused_connection_is_retried(user, allow_private):
    ctx, payload = delivery_for(finished_job(user), f"http://127.0.0.1:{free_port()}/hook")

    with pytest.raises(RetryableError, match="ConnectionRefusedError"):
        deliver(ctx, payload)


def test_the_url_is_checked_again_at_delivery_time(user, settings, receiver):
    settings.WEBHOOK_ALLOW_PRIVATE = False  # e.g. the name now resolves to an internal address
    ctx, payload = delivery_for(finished_job(user), receiver.url)

    with pytest.raises(PermanentError, match="private, loopback or link-local"):
        deliver(ctx, payload)

    settings.WEBHOOK_ALLOW_PRIVATE = True
    ctx, payload = delivery_for(finished_job(user), "http://169.254.169.254/latest/meta-data/")
    with pytest.raises(PermanentError, match="metadata"):
        deliver(ctx, payload)
    assert receiver.requests == []


def test_a_host_that_does_not_resolve_is_retried(user, allow_private):
    ctx, payload = delivery_for(finished_job(user), "http://receiver.invalid/hook")

    with pytest.raises(RetryableError, match="does not resolve"):
        deliver(ctx, payload)


def test_it_connects_to_the_checked_address_not_a_fresh_dns_answer(user, allow_private, receiver, monkeypatch):
    # The check's answer is the only one used: `.invalid` never resolves, so a second
    # lookup at connect time would fail.
    monkeypatch.setattr(services, "check_outbound_url", lambda url: ["127.0.0.1"])
    url = f"http://receiver.invalid:{receiver.port}/hooks"
    ctx, payload = delivery_for(finished_job(user), url)

    deliver(ctx, payload)

    [request] = receiver.posts()
    assert request.headers["Host"] == f"receiver.invalid:{receiver.port}"


def test_a_delivery_about_another_clients_job_is_refused(user, allow_private, receiver):
    someone_else = UserFactory(username="someone-else")
    ctx, payload = delivery_for(finished_job(someone_else), receiver.url, owner=user)

    with pytest.raises(PermanentError, match="belongs to another client"):
        deliver(ctx, payload)

    assert receiver.requests == []


def test_the_secret_never_appears_in_a_log_line(user, api, allow_private, receiver, caplog):
    ctx, payload = delivery_for(finished_job(user), receiver.url)
    receiver.script = [200, 500]

    with caplog.at_level(logging.DEBUG):
        secret = api.get(SECRET_URL).json()["secret"]
        deliver(ctx, payload)
        with pytest.raises(RetryableError):
            deliver(ctx, payload)
        api.post(ROTATE_URL)
    rotated = WebhookSecret.objects.get(owner=user)

    assert caplog.records, "the delivery logs what the receiver answered"
    assert secret not in caplog.text
    assert rotated.secret not in caplog.text
    assert rotated.secret not in str(rotated)
    assert rotated.secret not in repr(rotated)

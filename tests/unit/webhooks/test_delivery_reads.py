"""What a delivery reads before it POSTs (apps.webhooks.selectors): its client, the client's
secret and the job, in one statement, since every delivery on worker-io's threads pays for it
in one shared interpreter; and the portable reads give the same answers."""

from __future__ import annotations

import uuid

import pytest

from apps.jobs.models import JobStatus
from apps.jobs.registry import PermanentError
from apps.webhooks import selectors, services
from apps.webhooks.models import WebhookSecret
from apps.webhooks.signing import verify_signature
from tests.factories import UserFactory
from tests.unit.webhooks.test_webhooks import delivery_for, finished_job
from workers.kinds.webhooks import deliver


@pytest.fixture
def allow_private(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True


def test_a_delivery_reads_its_client_secret_and_job_in_one_query(
    user, allow_private, receiver, django_assert_num_queries
):
    services.webhook_secret_get_or_create(owner_id=user.pk)
    ctx, payload = delivery_for(finished_job(user), receiver.url)

    with django_assert_num_queries(1):
        result = deliver(ctx, payload)

    assert result["status_code"] == 200


def test_a_clients_first_delivery_makes_its_secret_and_signs_with_it(user, allow_private, receiver):
    ctx, payload = delivery_for(finished_job(user), receiver.url)
    assert not WebhookSecret.objects.filter(owner=user).exists()

    deliver(ctx, payload)

    [request] = receiver.posts()
    secret = WebhookSecret.objects.get(owner=user).secret
    headers = request.headers
    assert verify_signature(secret, headers["Webhook-Timestamp"], request.body, headers["Webhook-Signature"])


def test_a_missing_delivery_job_is_a_permanent_error(user, allow_private, receiver):
    payload = {"job_id": str(finished_job(user).id), "url": receiver.url, "event": "job.finished"}

    with pytest.raises(PermanentError, match="does not exist"):
        services.webhook_deliver(delivery_id=str(uuid.uuid4()), **payload)

    assert receiver.requests == []


def test_the_portable_reads_answer_as_the_postgresql_statement_does(user):
    services.webhook_secret_get_or_create(owner_id=user.pk)
    mine = finished_job(user, status=JobStatus.FAILED, result=None, error_type="Boom", error_message="it broke")
    theirs = finished_job(UserFactory(username="someone-else"))
    ctx, _ = delivery_for(mine, "http://127.0.0.1/hook")
    secretless = UserFactory(username="no-secret-yet")
    answered = finished_job(secretless)  # result {"answer": 42}: JSON read back alike
    other_ctx, _ = delivery_for(answered, "http://127.0.0.1/hook")

    cases = [
        {"delivery_id": ctx.job_id, "job_id": str(mine.id)},
        {"delivery_id": ctx.job_id, "job_id": str(theirs.id)},  # another client's job: None
        {"delivery_id": ctx.job_id, "job_id": None},  # an event about something else
        {"delivery_id": other_ctx.job_id, "job_id": str(answered.id)},  # a client without a secret yet
        {"delivery_id": str(uuid.uuid4()), "job_id": str(mine.id)},  # no such delivery: None
    ]
    for case in cases:
        assert selectors.delivery_facts(**case) == selectors._delivery_facts_orm(**case), case
    facts = selectors.delivery_facts(**cases[0])
    assert facts is not None
    assert facts.job is not None
    assert (facts.owner_id, facts.job["status"], facts.job["error_type"]) == (user.pk, "failed", "Boom")

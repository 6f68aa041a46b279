"""A workflow with a callback_url: its end creates one signed workflow.finished delivery, in
the finishing transaction, through the webhooks app's delivery kind."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from apps.jobs.models import Job
from apps.webhooks import services as webhooks
from apps.webhooks.models import WebhookSecret
from apps.webhooks.signing import verify_signature
from tests.conftest import json_roundtrip
from tests.unit.workflows.helpers import fail, node, start, succeed
from workers.kinds.webhooks import deliver

pytestmark = pytest.mark.django_db


@dataclass
class Ctx:
    job_id: str
    attempt: int = 1


def deliveries() -> list[Job]:
    return list(Job.objects.filter(kind=webhooks.DELIVER_KIND))


def test_a_workflow_sends_one_signed_webhook_when_it_ends(user, settings, receiver):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    workflow = start(user, node("a"), node("b", "a"), callback_url=receiver.url)
    succeed(workflow, "a")
    assert deliveries() == []  # not before its last job ends
    succeed(workflow, "b")
    [delivery] = deliveries()
    assert delivery.payload == {"subject_id": str(workflow.id), "url": receiver.url, "event": "workflow.finished"}
    assert delivery.owner_id == user.pk

    deliver(Ctx(job_id=str(delivery.id)), json_roundtrip(delivery.payload))
    [request] = receiver.posts()
    secret = WebhookSecret.objects.get(owner=user).secret
    headers = request.headers
    assert verify_signature(secret, headers["Webhook-Timestamp"], request.body, headers["Webhook-Signature"])
    document = json.loads(request.body)
    assert document["event"] == "workflow.finished"
    assert document["workflow"]["id"] == str(workflow.id)
    assert document["workflow"]["status"] == "succeeded"
    assert document["workflow"]["counts"]["succeeded"] == 2
    assert [j["ref"] for j in document["workflow"]["jobs"]] == ["a", "b"]


def test_a_failed_workflow_sends_its_webhook_once(user, settings, receiver):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    workflow = start(user, node("a"), node("b", "a"), node("c", "b"), callback_url=receiver.url)
    fail(workflow, "a")
    assert len(deliveries()) == 1

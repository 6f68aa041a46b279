"""Admin actions that call the services: retry, cancel, redrive, discard, one page at a time
or for everything matching a filter in the background with progress."""

from __future__ import annotations

import pytest

from apps.deadletters.models import DeadLetter
from apps.jobs import lifecycle
from apps.jobs.models import BulkOperation, IdempotencyKey, Job
from apps.jobs.operations import bulk_operation_run
from tests.factories import UserFactory

PAYLOADS = {"diagnostics.noop": {}, "diagnostics.flaky": {"fail_times": 1}}


def failed_job(owner, kind="diagnostics.noop", permanent=True):
    job = lifecycle.job_submit(owner=owner, kind=kind, payload=PAYLOADS[kind])
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w")
    lifecycle.job_fail_attempt(
        claim=claim, failure=lifecycle.AttemptFailure("Boom", "it broke", "tb", permanent=permanent)
    )
    return Job.objects.get(id=job.id)


@pytest.fixture
def owner(db):
    return UserFactory(username="admin-ops-client")


def post_action(admin_client, url, action, pks, select_across=False, query=""):
    data = {"action": action, "_selected_action": [str(pk) for pk in pks], "index": 0}
    if select_across:
        data["select_across"] = "1"
    return admin_client.post(f"{url}?{query}" if query else url, data, follow=True)


def test_retrying_selected_failed_jobs_queues_them_again_and_closes_their_dead_letters(admin_client, owner):
    jobs = [failed_job(owner) for _ in range(2)]
    response = post_action(admin_client, "/admin/jobs/job/", "retry", [j.id for j in jobs])
    assert response.status_code == 200
    assert "2 retried" in response.content.decode()
    assert set(Job.objects.filter(id__in=[j.id for j in jobs]).values_list("status", flat=True)) == {"queued"}
    assert not DeadLetter.objects.filter(job__in=jobs, state="open").exists()


def test_cancelling_selected_jobs_leaves_finished_ones_alone(admin_client, owner):
    waiting = lifecycle.job_submit(owner=owner, kind="diagnostics.noop", payload={})
    finished = failed_job(owner)
    response = post_action(admin_client, "/admin/jobs/job/", "cancel", [waiting.id, finished.id])
    assert "1 cancelled; 1 left as they were" in response.content.decode()
    assert Job.objects.get(id=waiting.id).status == "cancelled"
    assert Job.objects.get(id=finished.id).status == "failed"


def test_everything_matching_a_filter_is_retried_in_the_background_with_progress(
    admin_client, owner, django_capture_on_commit_callbacks
):
    flaky = [failed_job(owner, kind="diagnostics.flaky") for _ in range(3)]
    other = failed_job(owner, kind="diagnostics.noop")

    with django_capture_on_commit_callbacks(execute=True):
        response = post_action(
            admin_client, "/admin/jobs/job/", "retry", [flaky[0].id], select_across=True, query="kind=diagnostics.flaky"
        )
    assert "in the background" in response.content.decode()
    operation = BulkOperation.objects.get()
    assert operation.state == "pending"
    assert operation.filters == "kind=diagnostics.flaky"

    done = bulk_operation_run(operation_id=operation.pk)

    assert done.state == "done"
    assert (done.total, done.processed, done.changed) == (3, 3, 3)
    assert done.percent == 100.0
    assert set(Job.objects.filter(id__in=[j.id for j in flaky]).values_list("status", flat=True)) == {"queued"}
    assert Job.objects.get(id=other.id).status == "failed"
    page = admin_client.get(f"/admin/jobs/bulkoperation/{operation.pk}/change/")
    assert "100% (3 of 3)" in page.content.decode()


def test_dead_letters_matching_a_filter_are_discarded_in_the_background(admin_client, owner):
    for _ in range(3):
        failed_job(owner, kind="diagnostics.flaky")
    failed_job(owner, kind="diagnostics.noop")
    post_action(
        admin_client,
        "/admin/deadletters/deadletter/",
        "discard",
        [DeadLetter.objects.first().pk],
        select_across=True,
        query="kind__exact=diagnostics.flaky",
    )

    done = bulk_operation_run(operation_id=BulkOperation.objects.get().pk)

    assert done.changed == 3
    assert DeadLetter.objects.filter(state="open").get().kind == "diagnostics.noop"


def test_jobs_can_be_found_by_their_idempotency_key_and_filtered_by_client(admin_client, owner):
    keyed = lifecycle.job_submit_idempotent(
        owner=owner, idempotency_key="order-4711", kind="diagnostics.noop", payload={}
    ).job
    lifecycle.job_submit(owner=owner, kind="diagnostics.noop", payload={})
    other = lifecycle.job_submit(owner=UserFactory(username="someone-else"), kind="diagnostics.noop", payload={})
    assert IdempotencyKey.objects.filter(key="order-4711").exists()

    found = admin_client.get("/admin/jobs/job/?q=order-4711").content.decode()
    assert str(keyed.id) in found
    assert found.count("/change/") == 1

    mine = admin_client.get(f"/admin/jobs/job/?owner__id__exact={owner.pk}").content.decode()
    assert str(keyed.id) in mine
    assert str(other.id) not in mine

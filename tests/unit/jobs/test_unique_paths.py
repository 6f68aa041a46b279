"""Unique jobs (apps.jobs.lifecycle.unique) through every way jobs are made: batches,
Idempotency-Key, schedules, workflows; a race of twenty connections; and what it costs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.jobs import flow, lifecycle
from apps.jobs.models import Job
from apps.schedules import firing
from tests.factories import UserFactory
from tests.helpers.concurrency import race
from tests.unique_kinds import ACTIVE, DEBOUNCED
from tests.unit.schedules.helpers import make as make_schedule

JOBS = "/api/v1/jobs"
BATCH = "/api/v1/jobs/batch"


def submit(api: APIClient, kind: str = ACTIVE, headers: dict[str, str] | None = None, **payload: Any) -> Any:
    return api.post(JOBS, {"kind": kind, "payload": payload}, format="json", headers=headers)


def make(owner: Any, kind: str = ACTIVE, **payload: Any) -> Job:
    return lifecycle.job_submit(owner=owner, kind=kind, payload=payload)


# --- batches -------------------------------------------------------------------------------


def test_a_batch_marks_each_deduplicated_item_and_stays_202(api, user):
    held = submit(api, account="a").json()["id"]
    items = [
        {"kind": ACTIVE, "payload": {"account": "a"}},  # held before
        {"kind": ACTIVE, "payload": {"account": "b", "note": "first"}},
        {"kind": "diagnostics.noop", "payload": {}},
        {"kind": ACTIVE, "payload": {"account": "b", "note": "second"}},  # the second item's duplicate
    ]

    response = api.post(BATCH, {"jobs": items}, format="json")

    assert response.status_code == 202, response.content
    jobs = response.json()["jobs"]
    assert [job["deduplicated"] for job in jobs] == [True, False, False, True]
    assert jobs[0]["id"] == held
    assert jobs[3]["id"] == jobs[1]["id"]
    assert jobs[3]["payload"]["note"] == "first"
    assert Job.objects.filter(owner=user).count() == 3


def test_the_first_of_two_identical_items_is_new_and_published_once(api, user, django_capture_on_commit_callbacks):
    items = [{"kind": ACTIVE, "payload": {"account": "a"}}] * 2
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(BATCH, {"jobs": items}, format="json")

    jobs = response.json()["jobs"]
    assert [job["deduplicated"] for job in jobs] == [False, True]
    assert Job.objects.get(owner=user).published_at is not None


# --- Idempotency-Key -----------------------------------------------------------------------


def test_an_idempotent_replay_answers_as_the_original_did(api, user):
    first = submit(api, headers={"Idempotency-Key": "one"}, account="a")
    assert (first.status_code, first.headers["Job-Deduplicated"]) == (202, "false")

    duplicate = submit(api, headers={"Idempotency-Key": "two"}, account="a")
    assert (duplicate.status_code, duplicate.headers["Job-Deduplicated"]) == (200, "true")
    assert duplicate.headers["Idempotent-Replayed"] == "false"
    assert duplicate.json()["id"] == first.json()["id"]

    first_again = submit(api, headers={"Idempotency-Key": "one"}, account="a")
    duplicate_again = submit(api, headers={"Idempotency-Key": "two"}, account="a")

    assert (first_again.status_code, first_again.headers["Idempotent-Replayed"]) == (202, "true")
    assert first_again.headers["Job-Deduplicated"] == "false"
    assert (duplicate_again.status_code, duplicate_again.headers["Idempotent-Replayed"]) == (200, "true")
    assert duplicate_again.headers["Job-Deduplicated"] == "true"
    assert duplicate_again.json()["id"] == first.json()["id"]
    assert Job.objects.filter(owner=user).count() == 1


def test_a_key_of_a_deduplicated_submission_lives_its_own_24_hours(user):
    from apps.jobs.models import IdempotencyKey

    job = make(user, account="a")
    Job.objects.filter(id=job.id).update(created_at=timezone.now() - timedelta(days=2))

    submission = lifecycle.job_submit_idempotent(owner=user, idempotency_key="k", kind=ACTIVE, payload={"account": "a"})

    assert (submission.status_code, submission.deduplicated, submission.job.id) == (200, True, job.id)
    assert IdempotencyKey.objects.get(key="k").created_at > timezone.now() - timedelta(minutes=1)


# --- other ways jobs are made --------------------------------------------------------------


def test_a_schedules_firing_whose_key_is_held_makes_no_job_and_the_sweep_goes_on(user):
    held = make(user, account="a")
    blocked = make_schedule(user, kind=ACTIVE, payload={"account": "a"})
    free = make_schedule(user, kind="diagnostics.noop")
    due = max(blocked.next_run_at, free.next_run_at)

    assert firing.schedules_fire_due(now=due + timedelta(milliseconds=1)) == 1

    blocked.refresh_from_db()
    free.refresh_from_db()
    assert str(held.id) in blocked.last_error
    assert blocked.last_job_id is None
    assert blocked.next_run_at > due  # the firing is spent, not retried at every sweep
    assert free.last_job_id is not None
    assert free.last_error == ""
    assert Job.objects.filter(owner=user, kind=ACTIVE).count() == 1


def test_a_workflows_jobs_are_never_deduplicated(user):
    from apps.workflows import services as workflows

    make(user, account="a")
    workflow = workflows.workflow_submit(
        owner=user,
        jobs=[
            {"ref": "x", "kind": ACTIVE, "payload": {"account": "a"}},
            {"ref": "y", "kind": ACTIVE, "payload": {"account": "a"}},
        ],
    )

    members = Job.objects.filter(workflow_id=workflow.pk)
    assert members.count() == 2
    assert set(members.values_list("unique_key", flat=True)) == {None}


# --- twenty connections at once ------------------------------------------------------------


def test_twenty_concurrent_identical_submits_make_one_job(transactional_db, settings):
    settings.CLIENT_MAX_IN_FLIGHT = 1000
    owner = UserFactory()
    token = Token.objects.create(user=owner).key

    def identical(client: APIClient) -> tuple[int, str, str]:
        response = submit(client, account="a", region="eu")
        return response.status_code, response.json().get("id"), response.headers.get("Job-Deduplicated")

    try:
        results = race(20, token, identical)
        [job] = Job.objects.filter(owner=owner)
        assert sorted(code for code, _, _ in results) == [200] * 19 + [202], results
        assert {job_id for _, job_id, _ in results} == {str(job.id)}
        assert sorted(flag for _, _, flag in results) == ["false"] + ["true"] * 19
    finally:
        flow.redis_client().delete(flow.in_flight_key(owner.pk))


# --- what it costs -------------------------------------------------------------------------


def test_a_unique_kinds_first_submission_costs_what_any_submission_does(
    api, user, django_assert_num_queries, django_capture_on_commit_callbacks
):
    # The same four as tests/unit/jobs/test_apis.py pins for a kind without uniqueness: the
    # token, the in-flight count, the insert (ON CONFLICT DO NOTHING), the outbox mark.
    flow.redis_client().delete(flow.in_flight_key(user.pk))
    with django_assert_num_queries(4), django_capture_on_commit_callbacks(execute=True):
        assert submit(api, account="a").status_code == 202


def test_creating_a_job_costs_one_statement_unique_or_not(user, django_assert_num_queries):
    checked = [lifecycle.job_check(owner=user, kind=kind, payload={}) for kind in ("diagnostics.noop", ACTIVE)]
    for one in checked:
        with django_assert_num_queries(1):
            lifecycle.jobs_create(owner=user, checked=[one])


def test_a_duplicate_costs_the_insert_and_one_read(user, django_assert_num_queries):
    make(user, account="a")
    checked = lifecycle.job_check(owner=user, kind=ACTIVE, payload={"account": "a"})

    with django_assert_num_queries(2):
        [job] = lifecycle.jobs_create(owner=user, checked=[checked])

    assert lifecycle.job_deduplicated(job)


def test_a_debounced_duplicate_costs_one_update_more(user, django_assert_num_queries):
    make(user, DEBOUNCED, account="a")
    checked = lifecycle.job_check(owner=user, kind=DEBOUNCED, payload={"account": "a"})

    with django_assert_num_queries(3):
        lifecycle.jobs_create(owner=user, checked=[checked])


def test_a_batch_of_unique_jobs_is_written_with_one_statement(user, django_assert_num_queries):
    checked = [lifecycle.job_check(owner=user, kind=ACTIVE, payload={"account": str(i)}) for i in range(50)]
    checked += [lifecycle.job_check(owner=user, kind="diagnostics.noop", payload={}) for _ in range(50)]

    with django_assert_num_queries(2):  # COPY of the plain ones, one INSERT ... ON CONFLICT of the unique ones
        jobs = lifecycle.jobs_create(owner=user, checked=checked)

    assert len({job.id for job in jobs}) == 100
    assert Job.objects.filter(owner=user).count() == 100


def test_a_batch_items_fast_output_equals_drfs_own(user):
    from apps.jobs.serializers import JobBatchItemOutput

    new = make(user, account="a")
    duplicate = make(user, account="a")
    for job in (new, duplicate):
        serializer = JobBatchItemOutput(context={})
        assert serializer.to_representation(job) == serializer.drf_representation(job)
    assert JobBatchItemOutput(duplicate).data["deduplicated"] is True
    assert JobBatchItemOutput(new).data["deduplicated"] is False

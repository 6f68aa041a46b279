"""Unique jobs and debounce (apps.jobs.lifecycle.unique): the declaration, the key, the API's
200 and Job-Deduplicated, the release of the key (active, period) and debounce. Batches,
Idempotency-Key, schedules, the race and the query counts: test_unique_paths.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.jobs import lifecycle
from apps.jobs.models import Job, JobStatus
from apps.jobs.registry import Kind, registry
from tests.factories import UserFactory
from tests.unique_kinds import ACTIVE, CAP_SECONDS, CAPPED, DEBOUNCE_SECONDS, DEBOUNCED, PERIOD, PERIOD_SECONDS

JOBS = "/api/v1/jobs"
SCHEMA = {"type": "object", "properties": {"account": {"type": "string"}, "note": {"type": "string"}}}


def submit(api: APIClient, kind: str = ACTIVE, headers: dict[str, str] | None = None, **payload: Any) -> Any:
    return api.post(JOBS, {"kind": kind, "payload": payload}, format="json", headers=headers)


def make(owner: Any, kind: str = ACTIVE, **payload: Any) -> Job:
    return lifecycle.job_submit(owner=owner, kind=kind, payload=payload)


def claim(job: Job) -> lifecycle.Claim:
    claimed = lifecycle.job_claim(job_id=str(job.id), worker="test")
    assert claimed is not None
    return claimed


# --- the declaration -----------------------------------------------------------------------


def declare(**options: Any) -> Kind:
    return Kind(name="testing.declared", handler=lambda ctx, payload: None, schema=SCHEMA, **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unique_by": ("missing",)}, "not in the schema properties"),
        ({"unique_by": ("account",), "unique_for": 0}, "at least 1"),
        ({"unique_by": ("account",), "unique_for": 0.5}, "at least 1"),
        ({"unique_by": ("account",), "unique_for": "60"}, "at least 1"),
        ({"unique_by": ("account",), "debounce": 0.2}, "at least 1"),
        ({"unique_by": ("account",), "unique_while": "forever"}, "unique_while must be one of"),
        ({"unique_by": ("account",), "unique_while": "period"}, "need unique_for"),
        ({"unique_by": ("account",), "debounce": True}, "need unique_for"),
        ({"unique_for": 60}, "need unique_by"),
        ({"debounce": 5}, "need unique_by"),
    ],
)
def test_a_bad_uniqueness_declaration_is_refused_at_once(options, message):
    with pytest.raises(ValueError, match=message):
        declare(**options)


def test_a_declaration_normalises_its_fields_and_its_debounce():
    assert declare(unique_by="account").unique_by == ("account",)
    assert declare(unique_by=["account", "note"]).unique_by == ("account", "note")
    assert declare(unique_by=("account",), unique_for=90, debounce=True).debounce_seconds == 90
    assert declare(unique_by=("account",), debounce=4).debounce_seconds == 4.0
    assert declare(unique_by=("account",)).debounce_seconds is None
    assert declare().unique_by == ()


def test_the_catalogue_shows_a_kinds_uniqueness(api):
    kinds = {k["name"]: k for k in api.get("/api/v1/kinds").json()["kinds"]}

    assert kinds["diagnostics.noop"]["unique"] is None
    assert kinds[ACTIVE]["unique"] == {
        "by": ["account", "region"],
        "for_seconds": None,
        "while": "active",
        "debounce_seconds": None,
    }
    assert kinds[PERIOD]["unique"]["while"] == "period"
    assert kinds[PERIOD]["unique"]["for_seconds"] == PERIOD_SECONDS
    assert kinds[DEBOUNCED]["unique"]["debounce_seconds"] == DEBOUNCE_SECONDS


# --- the key -------------------------------------------------------------------------------


def test_the_key_is_the_kind_and_its_unique_fields_whatever_else_or_their_order():
    k = registry.get(ACTIVE)
    key = lifecycle.unique_key(k=k, payload={"account": "a", "region": "eu", "note": "x"})

    assert len(key) == 64
    assert key == lifecycle.unique_key(k=k, payload={"note": "y", "region": "eu", "account": "a"})
    assert key != lifecycle.unique_key(k=k, payload={"account": "a", "region": "us"})
    assert key != lifecycle.unique_key(k=registry.get(CAPPED), payload={"account": "a", "region": "eu"})
    # a field left out is not a field set to null
    assert lifecycle.unique_key(k=k, payload={"account": "a"}) != lifecycle.unique_key(
        k=k, payload={"account": "a", "region": None}
    )


# --- duplicates through the API ------------------------------------------------------------


def test_a_duplicate_answers_200_with_the_existing_job_as_get_shows_it(api, user):
    first = submit(api, account="a", region="eu")
    assert first.status_code == 202, first.content
    assert first.headers["Job-Deduplicated"] == "false"

    again = submit(api, account="a", region="eu")

    assert again.status_code == 200, again.content
    assert again.headers["Job-Deduplicated"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"].endswith(f"/api/v1/jobs/{first.json()['id']}")
    assert again.json() == api.get(f"{JOBS}/{first.json()['id']}").json()
    assert Job.objects.filter(owner=user).count() == 1


def test_a_kind_without_uniqueness_carries_no_header(api):
    response = submit(api, kind="diagnostics.noop")

    assert response.status_code == 202
    assert "Job-Deduplicated" not in response.headers


def test_another_value_of_a_unique_field_makes_a_new_job(api, user):
    first = submit(api, account="a", region="eu").json()["id"]

    assert submit(api, account="a", region="us").status_code == 202
    assert submit(api, account="b", region="eu").status_code == 202
    assert submit(api, account="a").status_code == 202
    assert Job.objects.filter(owner=user).count() == 4
    assert Job.objects.filter(owner=user, id=first).exists()


def test_a_field_outside_unique_by_does_not_matter(api, user):
    first = submit(api, account="a", region="eu", note="one")

    again = submit(api, account="a", region="eu", note="two")

    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["payload"]["note"] == "one"  # the job as it was made


def test_keys_belong_to_one_client(api, user):
    other = UserFactory()
    theirs = make(other, account="a", region="eu")

    mine = submit(api, account="a", region="eu")

    assert mine.status_code == 202
    assert mine.json()["id"] != str(theirs.id)


def test_the_database_refuses_a_second_row_with_a_held_key(user):
    from django.db import IntegrityError, transaction

    job = make(user, account="a")
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(owner=user, kind=ACTIVE, queue="default", max_attempts=1, unique_key=job.unique_key)


# --- the active key's release ---------------------------------------------------------------


def test_the_key_is_released_when_the_job_succeeds(user):
    job = make(user, account="a")
    held = claim(job)
    assert make(user, account="a").id == job.id  # held while running

    assert lifecycle.job_succeed(claim=held, result={})

    job.refresh_from_db()
    assert (job.status, job.unique_key) == (JobStatus.SUCCEEDED, None)
    assert make(user, account="a").id != job.id


def test_the_key_is_released_when_the_job_fails(user):
    job = make(user, account="a")
    failure = lifecycle.AttemptFailure(error_type="ValueError", message="no", permanent=True)

    assert lifecycle.job_fail_attempt(claim=claim(job), failure=failure) == JobStatus.FAILED

    job.refresh_from_db()
    assert (job.status, job.unique_key) == (JobStatus.FAILED, None)
    assert not lifecycle.job_deduplicated(make(user, account="a"))


def test_a_retrying_job_keeps_its_key(user):
    job = make(user, account="a")
    failure = lifecycle.AttemptFailure(error_type="ValueError", message="again")

    assert lifecycle.job_fail_attempt(claim=claim(job), failure=failure) == JobStatus.RETRYING

    assert lifecycle.job_deduplicated(make(user, account="a"))


def test_the_key_is_released_when_the_job_is_cancelled(api, user):
    job_id = submit(api, account="a").json()["id"]

    assert api.post(f"{JOBS}/{job_id}/cancel").status_code == 202

    assert Job.objects.get(id=job_id).unique_key is None
    assert submit(api, account="a").status_code == 202


def test_an_active_key_is_held_at_most_unique_for_seconds(user):
    job = make(user, CAPPED, account="a")
    assert make(user, CAPPED, account="a").id == job.id
    Job.objects.filter(id=job.id).update(created_at=timezone.now() - timedelta(seconds=CAP_SECONDS + 1))

    newer = make(user, CAPPED, account="a")

    assert newer.id != job.id
    assert Job.objects.get(id=job.id).unique_key is None  # still queued, but its hold ran out
    assert make(user, CAPPED, account="a").id == newer.id


# --- the period ----------------------------------------------------------------------------


def test_a_period_key_is_held_after_the_job_finished(user):
    job = make(user, PERIOD, account="a")
    assert job.unique_until == job.created_at + timedelta(seconds=PERIOD_SECONDS)

    assert lifecycle.job_succeed(claim=claim(job), result={})

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.unique_key is not None
    again = make(user, PERIOD, account="a")
    assert (again.id, lifecycle.job_deduplicated(again)) == (job.id, True)


def test_a_period_key_is_free_once_the_period_ended(user):
    job = make(user, PERIOD, account="a")
    Job.objects.filter(id=job.id).update(unique_until=timezone.now() - timedelta(milliseconds=1))

    newer = make(user, PERIOD, account="a")

    assert newer.id != job.id
    assert not lifecycle.job_deduplicated(newer)
    assert Job.objects.get(id=job.id).unique_key is None
    assert Job.objects.get(id=newer.id).unique_key == job.unique_key


# --- debounce -------------------------------------------------------------------------------


def test_a_debounced_job_waits_its_delay_and_a_duplicate_moves_it_on(user):
    before = timezone.now()
    job = make(user, DEBOUNCED, account="a")
    assert job.run_at >= before + timedelta(seconds=DEBOUNCE_SECONDS)
    assert Job.objects.get(id=job.id).published_at is None
    # as if submitted a while ago, and published
    earlier = timezone.now() + timedelta(seconds=1)
    Job.objects.filter(id=job.id).update(run_at=earlier, published_at=timezone.now())

    moved_at = timezone.now()
    again = make(user, DEBOUNCED, account="a")

    assert again.id == job.id
    assert lifecycle.job_deduplicated(again)
    job.refresh_from_db()
    assert job.run_at >= moved_at + timedelta(seconds=DEBOUNCE_SECONDS)
    assert job.published_at is None  # the relay publishes it when due; a stale message is not due
    assert again.run_at == job.run_at


def test_debounce_leaves_a_started_job_alone(user):
    job = make(user, DEBOUNCED, account="a")
    Job.objects.filter(id=job.id).update(run_at=None)
    claim(job)

    again = make(user, DEBOUNCED, account="a")

    assert again.id == job.id
    job.refresh_from_db()
    assert (job.status, job.run_at) == (JobStatus.RUNNING, None)


def test_debounce_keeps_a_later_run_at(user):
    later = timezone.now() + timedelta(hours=1)
    job = lifecycle.job_submit(owner=user, kind=DEBOUNCED, payload={"account": "a"}, run_at=later)
    assert job.run_at == later

    make(user, DEBOUNCED, account="a")

    assert Job.objects.get(id=job.id).run_at == later

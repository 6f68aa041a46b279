"""The v1 jobs API as a client sees it: submit, read, list, cancel, the catalogue and docs."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from apps.jobs.models import Job, JobStatus
from tests.factories import JobFactory, UserFactory
from tests.helpers.api import JOB_FIELDS, queued_job_ids

JOBS = "/api/v1/jobs"


def submit(api: Any, capture: Any, **body: Any) -> Any:
    body.setdefault("payload", {})
    with capture(execute=True):
        return api.post(JOBS, {"kind": "diagnostics.noop", **body}, format="json")


# --- submit ------------------------------------------------------------------------------


def test_a_submission_answers_202_with_the_job_and_where_to_find_it(api, django_capture_on_commit_callbacks):
    response = submit(api, django_capture_on_commit_callbacks, kind="diagnostics.sleep", payload={"seconds": 1})

    assert response.status_code == 202
    body = response.json()
    assert set(body) >= JOB_FIELDS
    job_id = body["id"]
    assert uuid.UUID(job_id)
    assert response["Location"] == f"http://testserver/api/v1/jobs/{job_id}"
    assert body["kind"] == "diagnostics.sleep"
    assert body["status"] == "queued"
    assert body["priority"] == "default"
    assert body["attempts"] == 0
    assert body["max_attempts"] == 3
    assert body["progress"] == {"percent": None, "message": ""}
    assert body["result"] is None
    assert body["error"] is None
    assert body["created_at"]
    assert body["started_at"] is None
    assert body["finished_at"] is None
    assert body["links"] == {
        "self": f"http://testserver/api/v1/jobs/{job_id}",
        "cancel": f"http://testserver/api/v1/jobs/{job_id}/cancel",
    }


def test_an_accepted_job_is_committed_as_queued_on_its_kinds_queue_and_published(
    api, user, django_capture_on_commit_callbacks
):
    response = submit(api, django_capture_on_commit_callbacks, kind="diagnostics.sleep", payload={"seconds": 2})

    job = Job.objects.get(id=response.json()["id"])
    assert job.owner == user
    assert job.status == JobStatus.QUEUED
    assert job.kind == "diagnostics.sleep"
    assert job.payload == {"seconds": 2}
    assert job.queue == "default"
    assert job.run_at is None
    assert job.published_at is not None
    assert str(job.id) in queued_job_ids("default")


@pytest.mark.parametrize("priority", ["high", "low"])
def test_the_priority_chooses_the_queue(api, settings, priority, django_capture_on_commit_callbacks):
    settings.HIGH_PRIORITY_CLIENTS = ["*"]  # who may ask for high: tests/unit/jobs/test_fairness_defaults.py
    response = submit(api, django_capture_on_commit_callbacks, priority=priority)

    assert response.status_code == 202
    assert response.json()["priority"] == priority
    job = Job.objects.get(id=response.json()["id"])
    assert job.queue == priority
    assert str(job.id) in queued_job_ids(priority)
    assert str(job.id) not in queued_job_ids("default")


def test_a_client_may_ask_for_fewer_attempts_than_the_kind_allows(api, django_capture_on_commit_callbacks):
    response = submit(
        api, django_capture_on_commit_callbacks, kind="diagnostics.flaky", payload={"fail_times": 1}, max_attempts=2
    )

    assert response.status_code == 202
    assert response.json()["max_attempts"] == 2
    assert Job.objects.get(id=response.json()["id"]).max_attempts == 2


def test_a_job_with_run_at_in_the_future_is_held_in_the_database_not_published(api, django_capture_on_commit_callbacks):
    run_at = timezone.now() + timedelta(hours=1)

    response = submit(api, django_capture_on_commit_callbacks, run_at=run_at.isoformat())

    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    job = Job.objects.get(id=response.json()["id"])
    assert job.run_at == run_at
    assert job.published_at is None
    assert str(job.id) not in queued_job_ids("default")


def test_a_job_with_run_at_in_the_past_runs_at_once(api, django_capture_on_commit_callbacks):
    response = submit(
        api, django_capture_on_commit_callbacks, run_at=(timezone.now() - timedelta(minutes=5)).isoformat()
    )

    job = Job.objects.get(id=response.json()["id"])
    assert job.run_at is None
    assert job.published_at is not None
    assert str(job.id) in queued_job_ids("default")


def test_submitting_costs_a_fixed_number_of_queries_publish_included(
    api, user, django_assert_num_queries, django_capture_on_commit_callbacks
):
    # The hot path: token lookup, the client's in-flight count (admission control), the
    # insert (committed by itself, no transaction around it), the outbox mark after the
    # publish. Queue depth comes from Redis, not SQL.
    from apps.jobs import flow

    flow.redis_client().delete(flow.in_flight_key(user.pk))  # no count cached: it is read from SQL
    with django_assert_num_queries(4), django_capture_on_commit_callbacks(execute=True):
        response = api.post(JOBS, {"kind": "diagnostics.noop", "payload": {}}, format="json")

    assert response.status_code == 202
    assert Job.objects.get(id=response.json()["id"]).published_at is not None


def test_a_clients_next_submissions_within_the_second_skip_the_in_flight_count(
    api, django_assert_num_queries, django_capture_on_commit_callbacks
):
    """The count is read from PostgreSQL once a second per client (a COUNT that grows with
    the client's backlog) and carried in Redis meanwhile, raised by each admitted job."""
    from apps.jobs import flow

    with django_capture_on_commit_callbacks(execute=True):
        first = api.post(JOBS, {"kind": "diagnostics.noop", "payload": {}}, format="json")
    assert first.status_code == 202
    cached = flow.in_flight_key(Job.objects.get(id=first.json()["id"]).owner_id)
    for _ in range(3):
        # The cached second must not run out between two posts on a loaded machine: stretch it.
        flow.redis_client().pexpire(cached, 60_000)
        with django_assert_num_queries(3), django_capture_on_commit_callbacks(execute=True):
            assert api.post(JOBS, {"kind": "diagnostics.noop", "payload": {}}, format="json").status_code == 202
    owner = Job.objects.get(id=first.json()["id"]).owner_id
    assert int(flow.redis_client().get(flow.in_flight_key(owner))) == 4


def test_the_in_flight_quota_holds_within_the_cached_second(api, settings, django_capture_on_commit_callbacks):
    settings.CLIENT_MAX_IN_FLIGHT = 3
    codes = []
    for _ in range(5):
        with django_capture_on_commit_callbacks(execute=True):
            codes.append(api.post(JOBS, {"kind": "diagnostics.noop", "payload": {}}, format="json").status_code)
    assert codes == [202, 202, 202, 429, 429]


# --- read ----------------------------------------------------------------------------------


def test_a_client_reads_its_job_with_the_contracts_fields(api, user):
    job = JobFactory(
        owner=user,
        status=JobStatus.SUCCEEDED,
        attempts=2,
        result={"answer": 42},
        progress_percent=100.0,
        progress_message="done",
        started_at=timezone.now(),
        finished_at=timezone.now(),
    )

    response = api.get(f"{JOBS}/{job.id}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) >= JOB_FIELDS
    assert body["id"] == str(job.id)
    assert body["status"] == "succeeded"
    assert body["attempts"] == 2
    assert body["result"] == {"answer": 42}
    assert body["progress"] == {"percent": 100.0, "message": "done"}
    assert body["error"] is None
    assert body["started_at"]
    assert body["finished_at"]
    assert body["links"]["self"] == f"http://testserver/api/v1/jobs/{job.id}"


def test_a_failed_job_shows_its_error_type_and_message_but_no_traceback(api, user):
    job = JobFactory(
        owner=user,
        status=JobStatus.FAILED,
        error_type="PermanentError",
        error_message="bad input",
        error_traceback="Traceback (most recent call last): ...",
    )

    body = api.get(f"{JOBS}/{job.id}").json()

    assert body["error"] == {"type": "PermanentError", "message": "bad input"}
    assert "Traceback" not in json.dumps(body)


# --- list ----------------------------------------------------------------------------------


def make_jobs(owner: Any, count: int, **fields: Any) -> list[Job]:
    """`count` jobs a minute apart, returned newest first."""
    start = timezone.now() - timedelta(hours=1)
    jobs = [JobFactory(owner=owner, created_at=start + timedelta(minutes=i), **fields) for i in range(count)]
    return list(reversed(jobs))


def ids(response: Any) -> list[str]:
    return [job["id"] for job in response.json()["results"]]


def test_the_list_shows_only_the_callers_jobs_newest_first(api, user):
    mine = make_jobs(user, 3)
    make_jobs(UserFactory(), 2)

    response = api.get(JOBS)

    assert response.status_code == 200
    assert ids(response) == [str(j.id) for j in mine]
    # A row leaves the large fields out unless asked for (?include=payload,result).
    assert set(response.json()["results"][0]) >= JOB_FIELDS - {"result"}
    assert "result" not in response.json()["results"][0]


def test_a_list_page_costs_the_same_queries_however_many_jobs_it_holds(api, user, django_assert_num_queries):
    """The token and the page: no query per job (a list loads only the columns it shows)."""
    jobs = make_jobs(user, 20)
    Job.objects.filter(id__in=[j.id for j in jobs]).update(
        status="failed", error_type="ValueError", error_traceback="Traceback ...\n" * 200
    )
    with django_assert_num_queries(2):
        response = api.get(JOBS, {"status": "failed"})
    assert response.status_code == 200
    assert len(ids(response)) == 20
    assert response.json()["results"][0]["error"]["type"] == "ValueError"


def test_the_list_pages_with_a_cursor_until_every_job_was_seen_once(api, user):
    mine = make_jobs(user, 5)

    seen: list[str] = []
    url: str | None = f"{JOBS}?page_size=2"
    pages = 0
    while url:
        response = api.get(url)
        assert response.status_code == 200
        page = ids(response)
        assert len(page) <= 2
        seen.extend(page)
        url = response.json()["next"]
        pages += 1

    assert pages == 3
    assert seen == [str(j.id) for j in mine]


def test_the_client_chooses_the_page_size(api, user):
    newest, _, _ = make_jobs(user, 3)

    response = api.get(f"{JOBS}?page_size=1")

    assert ids(response) == [str(newest.id)]
    assert response.json()["next"]
    assert response.json()["previous"] is None


def test_a_page_holds_at_most_200_jobs_and_a_larger_page_size_is_refused(api, user):
    start = timezone.now() - timedelta(days=1)
    Job.objects.bulk_create(
        Job(
            owner=user,
            kind="diagnostics.noop",
            queue="default",
            max_attempts=3,
            created_at=start + timedelta(seconds=i),
        )
        for i in range(201)
    )

    response = api.get(f"{JOBS}?page_size=200")
    refused = api.get(f"{JOBS}?page_size=1000")

    assert len(ids(response)) == 200
    assert response.json()["next"]
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_page_size"


def test_the_list_filters_by_status(api, user):
    failed = JobFactory(owner=user, status=JobStatus.FAILED)
    JobFactory(owner=user, status=JobStatus.QUEUED)
    JobFactory(owner=UserFactory(), status=JobStatus.FAILED)

    assert ids(api.get(f"{JOBS}?status=failed")) == [str(failed.id)]


def test_the_list_filters_by_kind(api, user):
    sleep = JobFactory(owner=user, kind="diagnostics.sleep", payload={"seconds": 1})
    JobFactory(owner=user, kind="diagnostics.noop")

    assert ids(api.get(f"{JOBS}?kind=diagnostics.sleep")) == [str(sleep.id)]


def test_the_list_filters_by_creation_time(api, user):
    newest, middle, oldest = make_jobs(user, 3)

    after = api.get(JOBS, {"created_after": oldest.created_at.isoformat()})
    before = api.get(JOBS, {"created_before": newest.created_at.isoformat()})
    between = api.get(
        JOBS, {"created_after": oldest.created_at.isoformat(), "created_before": newest.created_at.isoformat()}
    )

    assert ids(after) == [str(newest.id), str(middle.id)]
    assert ids(before) == [str(middle.id), str(oldest.id)]
    assert ids(between) == [str(middle.id)]


# --- cancel --------------------------------------------------------------------------------


def test_cancelling_a_queued_job_answers_202_and_it_never_starts(api, user):
    job = JobFactory(owner=user)

    response = api.post(f"{JOBS}/{job.id}/cancel")

    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"]
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert job.cancel_requested_at is not None


def test_cancelling_a_running_job_asks_it_to_stop(api, user):
    job = JobFactory(owner=user, status=JobStatus.RUNNING, attempts=1, started_at=timezone.now())

    response = api.post(f"{JOBS}/{job.id}/cancel")

    assert response.status_code == 202
    assert response.json()["status"] == "running"
    job.refresh_from_db()
    assert job.cancel_requested_at is not None
    assert job.finished_at is None


@pytest.mark.parametrize("terminal", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_cancelling_a_finished_job_answers_409(api, user, terminal):
    job = JobFactory(owner=user, status=terminal)

    response = api.post(f"{JOBS}/{job.id}/cancel")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job_terminal"
    job.refresh_from_db()
    assert job.status == terminal


# --- catalogue, docs, health ------------------------------------------------------------------


def test_the_kinds_endpoint_lists_every_kind_with_its_schema_and_policy(api):
    response = api.get("/api/v1/kinds")

    assert response.status_code == 200
    kinds = {k["name"]: k for k in response.json()["kinds"]}
    assert {"diagnostics.noop", "diagnostics.sleep", "diagnostics.flaky", "images.thumbnail"} <= set(kinds)
    sleep = kinds["diagnostics.sleep"]
    assert sleep["input_schema"]["required"] == ["seconds"]
    assert sleep["input_schema"]["properties"]["seconds"]["maximum"] == 3600
    assert sleep["queue"] == "default"
    assert kinds["diagnostics.flaky"]["max_attempts"] == 5
    assert all(k["input_schema"]["type"] == "object" for k in kinds.values())


def test_the_openapi_schema_describes_the_jobs_api(db, client):
    response = client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/jobs" in schema["paths"]
    assert "post" in schema["paths"]["/api/v1/jobs"]
    assert "/api/v1/jobs/{job_id}/cancel" in schema["paths"]


def test_the_api_docs_page_loads(db, client):
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def test_healthz_answers_200_without_authentication(db, client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}

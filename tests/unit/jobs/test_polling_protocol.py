"""The polling protocol of one job (apps.jobs.polling) as plain functions: the weak ETag and
If-None-Match, Retry-After, the bounds of ?wait=N, and the 304 the view answers with.
tests/unit/jobs/test_polling.py holds the same protocol through the API."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from apps.core.errors import InvalidInput, NotFound
from apps.jobs import notify, polling
from apps.jobs.models import JobStatus
from tests.factories import JobFactory


def version(status: str = JobStatus.QUEUED, run_at: Any = None, **kwargs: Any) -> polling.JobVersion:
    defaults = {"job_id": str(uuid.uuid4()), "updated_at": timezone.now()}
    return polling.JobVersion(**{**defaults, **kwargs}, status=status, run_at=run_at)


def get(user: Any, job_id: object, *, wait: str | None = None, if_none_match: str | None = None) -> Request:
    params = {} if wait is None else {"wait": wait}
    headers = {} if if_none_match is None else {"HTTP_IF_NONE_MATCH": if_none_match}
    request = Request(APIRequestFactory().get(f"/api/v1/jobs/{job_id}", params, **headers))
    request.user = user
    return request


# --- the ETag and If-None-Match ---------------------------------------------------------------


def test_the_etag_is_weak_and_moves_with_the_status_and_updated_at():
    base = version()

    assert base.etag.startswith('W/"')
    assert version(job_id=base.job_id, updated_at=base.updated_at).etag == base.etag
    assert version(job_id=base.job_id, updated_at=base.updated_at, status=JobStatus.RUNNING).etag != base.etag
    later = base.updated_at + timedelta(microseconds=1)
    assert version(job_id=base.job_id, updated_at=later).etag != base.etag


def test_if_none_match_drops_the_weak_prefix_and_splits_a_list():
    assert polling.if_none_match('W/"a", "b" ,, *') == {'"a"', '"b"', "*"}
    assert polling.if_none_match("") == set()


@pytest.mark.parametrize(
    ("tags", "matched"),
    [({'"x"'}, False), ({"*"}, True), ({'"other"', "{strong}"}, True)],
    ids=["stale", "star", "one-of-a-list"],
)
def test_a_tag_matches_weakly_or_by_star(tags, matched):
    etag = version().etag
    strong = etag.removeprefix("W/")

    assert polling.matches({tag.format(strong=strong) for tag in tags}, etag) is matched


# --- Retry-After ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING])
def test_a_job_under_way_says_to_ask_again_in_a_second(status):
    assert polling.retry_after(version(status)) == 1


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_a_finished_job_has_no_retry_after_header(status):
    finished = version(status)

    assert polling.retry_after(finished) is None
    assert "Retry-After" not in polling.headers(finished)
    assert polling.headers(finished)["ETag"] == finished.etag


def test_a_waiting_job_says_when_it_is_due_between_one_second_and_the_ceiling(settings):
    now = timezone.now()

    assert polling.retry_after(version(JobStatus.RETRYING, run_at=now + timedelta(seconds=7.5))) == 8
    assert polling.retry_after(version(JobStatus.QUEUED, run_at=now - timedelta(seconds=5))) == 1
    far = version(JobStatus.QUEUED, run_at=now + timedelta(days=2))
    assert polling.retry_after(far) == settings.RETRY_AFTER_MAX_SECONDS
    assert polling.headers(far)["Retry-After"] == str(settings.RETRY_AFTER_MAX_SECONDS)


# --- ?wait=N ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "seconds"), [(None, 0.0), ("", 0.0), ("0", 0.0), ("2.5", 2.5), ("30", 30.0)])
def test_a_wait_within_bounds_is_read_as_seconds(raw, seconds):
    assert polling.wait_seconds(raw) == seconds


@pytest.mark.parametrize("raw", ["-1", str(notify.WAIT_MAX_SECONDS + 1), "abc", "nan", "inf", "1e9"])
def test_a_wait_out_of_bounds_or_not_a_number_is_refused(raw):
    with pytest.raises(InvalidInput) as refused:
        polling.wait_seconds(raw)

    assert refused.value.code == "invalid_wait"


# --- not_modified: what the view answers before reading the job -------------------------------


def test_a_request_without_a_tag_or_a_wait_reads_nothing(user, django_assert_num_queries):
    job = JobFactory(owner=user)

    with django_assert_num_queries(0):
        assert polling.not_modified(get(user, job.id), job_id=job.id) is None


def test_the_current_etag_answers_304_with_the_polling_headers(user, django_assert_num_queries):
    job = JobFactory(owner=user)
    etag = polling.JobVersion.of(job).etag

    with django_assert_num_queries(1):
        response = polling.not_modified(get(user, job.id, if_none_match=etag), job_id=job.id)

    assert response is not None
    assert response.status_code == 304
    assert response["ETag"] == etag
    assert response["Cache-Control"] == "private, no-cache"
    assert response["Retry-After"] == "1"


def test_a_stale_etag_leaves_the_answer_to_the_view(user):
    job = JobFactory(owner=user)

    assert polling.not_modified(get(user, job.id, if_none_match='W/"stale"'), job_id=job.id) is None


def test_someone_elses_job_is_not_found(user):
    job = JobFactory()

    with pytest.raises(NotFound):
        polling.not_modified(get(user, job.id, if_none_match="*"), job_id=job.id)


def test_a_long_poll_on_a_finished_job_answers_at_once(user):
    job = JobFactory(owner=user, status=JobStatus.SUCCEEDED)
    etag = polling.JobVersion.of(job).etag

    started = time.monotonic()
    response = polling.not_modified(get(user, job.id, wait="30", if_none_match=etag), job_id=job.id)

    # A fraction of the wait asked for: a loaded machine is slow, never thirty seconds slow.
    assert time.monotonic() - started < 10
    assert response is not None
    assert response.status_code == 304
    assert "Retry-After" not in response


def test_a_long_poll_on_an_unchanged_job_ends_at_its_wait_with_304(user):
    job = JobFactory(owner=user)
    etag = polling.JobVersion.of(job).etag

    started = time.monotonic()
    response = polling.not_modified(get(user, job.id, wait="0.3", if_none_match=etag), job_id=job.id)
    elapsed = time.monotonic() - started

    assert 0.3 <= elapsed < 10
    assert response is not None
    assert response.status_code == 304


def test_a_long_poll_without_a_tag_leaves_the_answer_to_the_view(user):
    job = JobFactory(owner=user)

    assert polling.not_modified(get(user, job.id, wait="0.1"), job_id=job.id) is None

"""Sloppy and hostile requests (issue 14) get a clear 4xx, never a 500 or a silent guess."""

from __future__ import annotations

from typing import Any

import pytest

from apps.jobs.models import Job

JOBS = "/api/v1/jobs"
BATCH = "/api/v1/jobs/batch"


def post_raw(api: Any, path: str, body: str, **extra: Any) -> Any:
    """POST a JSON text as given: the test client would re-encode a lone surrogate."""
    return api.generic("POST", path, body.encode(), content_type="application/json", **extra)


# --- 8: a lone surrogate is refused like a NUL -----------------------------------------------


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ('{"note": "\\ud800"}', "note"),
        ('{"a": {"b": ["ok", "x\\udfff"]}}', "a/b/1"),
        ('{"\\ud800": 1}', "\ufffd"),
    ],
)
def test_a_lone_surrogate_in_a_payload_is_refused_with_400(api, payload, path):
    response = post_raw(api, JOBS, f'{{"kind": "testing.limited", "payload": {payload}}}')

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_payload"
    assert error["details"] == [{"path": path, "message": error["details"][0]["message"]}]
    assert "surrogate" in error["details"][0]["message"]
    assert not Job.objects.exists()


def test_a_surrogate_pair_is_one_character_and_is_accepted(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_raw(api, JOBS, '{"kind": "testing.limited", "payload": {"note": "\\ud83d\\ude00"}}')

    assert response.status_code == 202, response.content
    assert Job.objects.get().payload == {"note": "\U0001f600"}


def test_a_lone_surrogate_in_a_batch_names_the_job(api):
    body = (
        '{"jobs": [{"kind": "diagnostics.noop", "payload": {}}, '
        '{"kind": "diagnostics.noop", "payload": {"x": "\\ud800"}}]}'
    )
    response = post_raw(api, BATCH, body)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_batch"
    assert [item["index"] for item in error["details"]] == [1]
    assert not Job.objects.exists()


@pytest.mark.parametrize("field", ["priority", "kind", "callback_url", "run_at"])
def test_a_lone_surrogate_in_another_field_is_a_400_too(api, field):
    body = {"kind": '"diagnostics.noop"', "payload": "{}", field: '"x\\ud800"'}
    text = "{" + ", ".join(f'"{k}": {v}' for k, v in body.items()) + "}"
    response = post_raw(api, JOBS, text)

    assert response.status_code == 400, response.content
    assert not Job.objects.exists()


# --- 11: an unknown field is named, not ignored ----------------------------------------------


def test_an_unknown_field_is_refused_with_400_naming_it(api):
    response = api.post(JOBS, {"kind": "diagnostics.noop", "payload": {}, "priorty": "high"}, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert list(error["details"]) == ["priorty"]
    assert "Unknown field. Did you mean 'priority'?" in error["details"]["priorty"][0]
    assert not Job.objects.exists()


def test_an_unknown_field_beside_only_kind_is_refused_too(api):
    """{"kind", "x"} would otherwise look like the fast path's simple job."""
    response = api.post(JOBS, {"kind": "diagnostics.noop", "x": 1}, format="json")

    assert response.status_code == 400, response.content
    assert list(response.json()["error"]["details"]) == ["x"]


def test_an_unknown_field_in_a_batch_job_names_the_job_and_the_field(api):
    jobs = [{"kind": "diagnostics.noop"}, {"kind": "diagnostics.noop", "payload": {}, "priorty": "high"}]
    response = api.post(BATCH, {"jobs": jobs}, format="json")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_batch"
    assert [(item["index"], list(item["details"])) for item in error["details"]] == [(1, ["priorty"])]
    assert "priorty: Unknown field." in error["details"][0]["message"]
    assert not Job.objects.exists()


def test_an_unknown_field_beside_a_batchs_jobs_is_refused(api):
    response = api.post(BATCH, {"jobs": [{"kind": "diagnostics.noop"}], "atomic": False}, format="json")

    assert response.status_code == 400, response.content
    assert "atomic" in str(response.json()["error"]["details"])
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "diagnostics.noop", "payload": {}, "priorty": "high"},
        {"kind": "diagnostics.noop", "x": None},
        {"kind": "diagnostics.noop", "payload": {}, "priority": "low", "extra": 1},
    ],
)
def test_the_fast_path_leaves_an_unknown_field_to_drf(body):
    from apps.jobs.serializers import JobBatchSubmitInput, JobSubmitInput

    assert JobSubmitInput.simple_job(body) is None
    assert JobBatchSubmitInput.simple_jobs({"jobs": [body]}) is None
    assert JobBatchSubmitInput.simple_jobs({"jobs": [{"kind": "diagnostics.noop"}], "x": 1}) is None
    drf = JobSubmitInput(data=body)
    assert not drf.is_valid()
    assert set(drf.errors) == set(body) - {"kind", "payload", "priority"}


# --- 12: Bearer is a synonym of Token --------------------------------------------------------


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "Token", "TOKEN"])
def test_a_token_is_accepted_under_the_bearer_scheme_too(user, scheme):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    key = Token.objects.create(user=user).key
    response = APIClient().get(JOBS, HTTP_AUTHORIZATION=f"{scheme} {key}")

    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer " + "0" * 40, "Invalid token."),
        ("Bearer", "Invalid token header. No credentials provided."),
        ("Bearer a b", "Invalid token header. Token string should not contain spaces."),
    ],
)
def test_a_bad_bearer_token_gets_the_same_401_as_a_bad_token(db, header, message):
    from rest_framework.test import APIClient

    response = APIClient().get(JOBS, HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response.json()["error"] == {"code": "authentication_failed", "message": message}
    assert response.headers["WWW-Authenticate"] == "Token"


def test_another_scheme_still_answers_not_authenticated(db):
    from rest_framework.test import APIClient

    response = APIClient().get(JOBS, HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


# --- 13: a retry that spells out a default is the same request -------------------------------


@pytest.mark.parametrize(
    "explicit",
    [{"priority": "default"}, {"max_attempts": 3}, {"callback_url": ""}, {"priority": "default", "max_attempts": 3}],
)
def test_a_retry_spelling_out_a_default_replays_the_job(api, explicit):
    body = {"kind": "diagnostics.sleep", "payload": {"seconds": 1}}
    first = api.post(JOBS, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    again = api.post(JOBS, {**body, **explicit}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    # and the other way round: explicit first, then left out
    second = api.post(JOBS, {**body, **explicit}, format="json", HTTP_IDEMPOTENCY_KEY="k-2")
    bare = api.post(JOBS, body, format="json", HTTP_IDEMPOTENCY_KEY="k-2")

    assert (first.status_code, again.status_code, second.status_code, bare.status_code) == (202, 202, 202, 202)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert bare.json()["id"] == second.json()["id"]
    assert bare.headers["Idempotent-Replayed"] == "true"


def test_a_retry_with_a_value_other_than_the_default_is_still_422(api):
    body = {"kind": "diagnostics.sleep", "payload": {"seconds": 1}}
    api.post(JOBS, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    response = api.post(JOBS, {**body, "priority": "low"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_a_key_stored_with_the_fingerprint_of_the_arguments_as_given_still_replays(api, user):
    """Keys written before defaults were applied to the fingerprint live 24 hours more."""
    from apps.jobs import lifecycle
    from apps.jobs.models import IdempotencyKey

    body = {"kind": "diagnostics.sleep", "payload": {"seconds": 1}}
    first = api.post(JOBS, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    legacy = lifecycle.request_fingerprint(
        kind="diagnostics.sleep", payload={"seconds": 1}, priority=None, run_at=None, max_attempts=None, callback_url=""
    )
    IdempotencyKey.objects.filter(owner=user, key="k-1").update(fingerprint=legacy)

    again = api.post(JOBS, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert again.status_code == 202
    assert again.json()["id"] == first.json()["id"]


# --- 10: a chunked body is read, under the same limit ---------------------------------------


def post_chunked(api: Any, path: str, body: bytes, content_type: str = "application/json") -> Any:
    """POST as gunicorn hands a chunked request to WSGI: de-chunked on wsgi.input, with
    Transfer-Encoding and no Content-Length."""
    import io

    return api.generic(
        "POST",
        path,
        b"",
        content_type=content_type,
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": io.BytesIO(body)},
    )


def test_a_chunked_submit_is_read(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_chunked(api, JOBS, b'{"kind": "diagnostics.sleep", "payload": {"seconds": 1}}')

    assert response.status_code == 202, response.content
    assert Job.objects.get().payload == {"seconds": 1}


def test_a_chunked_body_over_the_limit_is_413(api, settings):
    settings.API_MAX_BODY_BYTES = 64 * 1024
    big = b'{"kind": "testing.limited", "payload": {"x": "' + b"a" * (2 * 1024 * 1024) + b'"}}'

    response = post_chunked(api, JOBS, big)

    assert response.status_code == 413, response.content
    assert response.json()["error"]["code"] == "body_too_large"
    assert not Job.objects.exists()


def test_a_chunked_body_of_exactly_the_limit_is_read(api, settings, django_capture_on_commit_callbacks):
    settings.API_MAX_BODY_BYTES = 2048
    head, tail = b'{"kind": "testing.limited", "payload": {"x": "', b'"}}'
    body = head + b"a" * (2048 - len(head) - len(tail)) + tail
    assert len(body) == 2048

    with django_capture_on_commit_callbacks(execute=True):
        response = post_chunked(api, JOBS, body)

    assert response.status_code == 202, response.content
    with django_capture_on_commit_callbacks(execute=True):
        assert post_chunked(api, JOBS, body[:-1] + b" }").status_code == 413


def test_a_chunked_batch_is_read(api, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_chunked(api, BATCH, b'{"jobs": [{"kind": "diagnostics.noop"}, {"kind": "diagnostics.noop"}]}')

    assert response.status_code == 202, response.content
    assert Job.objects.count() == 2


# --- 14: a pending cancel shows on the job ---------------------------------------------------


def test_a_cancel_of_a_running_job_says_when_it_was_asked(api, user):
    from django.utils import timezone

    from apps.jobs.models import JobStatus
    from tests.factories import JobFactory

    job = JobFactory(owner=user, status=JobStatus.RUNNING, attempts=1, started_at=timezone.now())
    assert api.get(f"{JOBS}/{job.id}").json()["cancel_requested_at"] is None

    response = api.post(f"{JOBS}/{job.id}/cancel")

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "running"
    job.refresh_from_db()
    assert body["cancel_requested_at"] == job.cancel_requested_at.isoformat().replace("+00:00", "Z")
    # A second cancel keeps the first time; the poll and the list show it too.
    again = api.post(f"{JOBS}/{job.id}/cancel").json()
    assert again["cancel_requested_at"] == body["cancel_requested_at"]
    assert api.get(f"{JOBS}/{job.id}").json()["cancel_requested_at"] == body["cancel_requested_at"]
    assert api.get(JOBS).json()["results"][0]["cancel_requested_at"] == body["cancel_requested_at"]


# --- 4: a list leaves the large fields out unless asked, and bounds them when asked ----------


def _job_with(user: Any, payload: Any, result: Any) -> Any:
    from tests.factories import JobFactory

    return JobFactory(owner=user, kind="testing.limited", payload=payload, result=result)


def test_a_list_row_leaves_payload_and_result_out_unless_asked(api, user):
    _job_with(user, {"x": 1}, {"y": 2})

    plain = api.get(JOBS).json()["results"][0]
    both = api.get(JOBS, {"include": "payload,result"}).json()["results"][0]
    one = api.get(JOBS, {"include": "result"}).json()["results"][0]

    assert "payload" not in plain
    assert "result" not in plain
    assert "truncated" not in plain
    assert (both["payload"], both["result"]) == ({"x": 1}, {"y": 2})
    assert "truncated" not in both
    assert one["result"] == {"y": 2}
    assert "payload" not in one


def test_a_list_page_without_include_reads_neither_column(api, user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _job_with(user, {"x": 1}, {"y": 2})
    with CaptureQueriesContext(connection) as queries:
        api.get(JOBS)
    page_sql = queries.captured_queries[-1]["sql"]
    assert '"payload"' not in page_sql
    assert '"result"' not in page_sql


def test_a_large_field_asked_for_in_a_list_comes_as_null_and_is_named(api, user, django_assert_num_queries):
    from apps.jobs.serializers import LIST_FIELD_MAX_CHARS

    _job_with(user, {"x": "a" * LIST_FIELD_MAX_CHARS}, {"small": True})

    with django_assert_num_queries(2):
        row = api.get(JOBS, {"include": "payload,result"}).json()["results"][0]

    assert row["payload"] is None
    assert row["result"] == {"small": True}
    assert row["truncated"] == ["payload"]


def test_an_unknown_include_is_refused(api):
    response = api.get(JOBS, {"include": "payload,traceback"})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_include"


def test_a_single_jobs_large_fields_are_bounded_too(api, user):
    from apps.jobs.serializers import JOB_FIELD_MAX_CHARS

    small = _job_with(user, {"x": 1}, {"y": [1, 2]})
    large = _job_with(user, {"x": 1}, {"y": "b" * JOB_FIELD_MAX_CHARS})

    assert api.get(f"{JOBS}/{small.id}").json()["result"] == {"y": [1, 2]}
    body = api.get(f"{JOBS}/{large.id}").json()
    assert body["payload"] == {"x": 1}
    assert body["result"] is None
    assert body["truncated"] == ["result"]


# --- 17: the small ones ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ("succeeded", "The job has already succeeded."),
        ("failed", "The job has already failed."),
        ("cancelled", "The job has already been cancelled."),
    ],
)
def test_cancelling_a_finished_job_says_so_in_english(api, user, status, message):
    from tests.factories import JobFactory

    job = JobFactory(owner=user, status=status)

    response = api.post(f"{JOBS}/{job.id}/cancel")

    assert response.status_code == 409
    assert response.json()["error"] == {"code": "job_terminal", "message": message}


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_a_finished_job_offers_no_cancel_link(api, user, status):
    from tests.factories import JobFactory

    job = JobFactory(owner=user, status=status)

    links = api.get(f"{JOBS}/{job.id}").json()["links"]

    assert links == {"self": f"http://testserver/api/v1/jobs/{job.id}"}
    assert list(api.get(JOBS).json()["results"][0]["links"]) == ["self"]


@pytest.mark.parametrize("status", ["queued", "running", "retrying"])
def test_a_job_not_finished_offers_its_cancel_link(api, user, status):
    from tests.factories import JobFactory

    job = JobFactory(owner=user, status=status)

    assert api.get(f"{JOBS}/{job.id}").json()["links"]["cancel"] == f"http://testserver/api/v1/jobs/{job.id}/cancel"


@pytest.mark.parametrize("size", ["0", "201", "500", "-1", "abc", "1.5"])
def test_a_page_size_out_of_range_is_refused_with_the_range(api, size):
    response = api.get(JOBS, {"page_size": size})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_page_size"
    assert error["details"] == {"min": 1, "max": 200}
    assert "from 1 to 200" in error["message"]


@pytest.mark.parametrize("size", ["1", "200"])
def test_a_page_size_in_range_is_used(api, user, size):
    from tests.factories import JobFactory

    JobFactory.create_batch(2, owner=user)

    response = api.get(JOBS, {"page_size": size})

    assert response.status_code == 200
    assert len(response.json()["results"]) == min(2, int(size))


def test_progress_comes_rounded_to_two_decimals(api, user):
    from tests.factories import JobFactory

    job = JobFactory(owner=user, status="running", attempts=1, progress_percent=51.28484245000209)

    assert api.get(f"{JOBS}/{job.id}").json()["progress"]["percent"] == 51.28
    assert api.get(JOBS).json()["results"][0]["progress"]["percent"] == 51.28


def test_a_running_job_shows_its_running_attempt(api, user):
    from apps.jobs import lifecycle

    job = lifecycle.job_submit(owner=user, kind="diagnostics.noop", payload={})
    lifecycle.job_claim(job_id=str(job.id), worker="celery@w1")

    body = api.get(f"{JOBS}/{job.id}").json()

    assert body["attempts"] == 1
    assert len(body["history"]) == 1
    running = body["history"][0]
    assert (running["number"], running["outcome"], running["worker"]) == (1, "running", "celery@w1")
    assert running["started_at"] == body["started_at"]
    assert running["finished_at"] is None


def test_several_statuses_filter_the_list(api, user):
    from tests.factories import JobFactory

    succeeded = JobFactory(owner=user, status="succeeded")
    failed = JobFactory(owner=user, status="failed")
    JobFactory(owner=user, status="queued")

    response = api.get(JOBS, {"status": "succeeded,failed"})

    assert response.status_code == 200
    assert {row["id"] for row in response.json()["results"]} == {str(succeeded.id), str(failed.id)}
    assert [row["id"] for row in api.get(JOBS, {"status": "failed"}).json()["results"]] == [str(failed.id)]


def test_an_unknown_status_in_the_list_is_refused_naming_it(api):
    response = api.get(JOBS, {"status": "succeeded,done"})

    assert response.status_code == 400
    assert "'done' is not a status" in response.json()["error"]["details"]["status"][0]

"""Every bad request gets the same JSON error body with a stable code, never a 5xx, and
leaves nothing half-written."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.jobs.models import Job
from tests.factories import JobFactory, UserFactory

JOBS = "/api/v1/jobs"


def submit_raw(api: APIClient, body: str | bytes, content_type: str = "application/json"):
    return api.generic("POST", JOBS, data=body, content_type=content_type)


def error_of(response: Any) -> dict[str, Any]:
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str)
    assert error["code"]
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


def test_it_refuses_an_unknown_kind_with_400_and_names_the_known_kinds(api):
    response = api.post(JOBS, {"kind": "no.such.kind", "payload": {}}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "unknown_kind"
    assert "no.such.kind" in error["message"]
    assert "diagnostics.noop" in error["details"]["known_kinds"]
    assert "images.thumbnail" in error["details"]["known_kinds"]
    assert "diagnostics.noop" in error["message"]


@pytest.mark.parametrize(
    ("payload", "path", "fragment"),
    [
        ({"seconds": -1}, "seconds", "minimum"),
        ({"seconds": 5000}, "seconds", "maximum"),
        ({"seconds": "x"}, "seconds", "not of type 'number'"),
        ({}, "(root)", "'seconds' is a required property"),
        ({"seconds": 1, "extra": True}, "(root)", "Additional properties are not allowed"),
    ],
)
def test_it_refuses_a_payload_that_breaks_the_kinds_schema_with_400_and_says_where(api, payload, path, fragment):
    response = api.post(JOBS, {"kind": "diagnostics.sleep", "payload": payload}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_payload"
    (detail,) = error["details"]
    assert detail["path"] == path
    assert fragment in detail["message"]
    assert f"{path}: {detail['message']}" in error["message"]


def test_it_lists_every_schema_error_of_a_payload_not_only_the_first(api):
    payload = {"image_base64": "", "sizes": [4, 4096], "format": "gif"}

    response = api.post(JOBS, {"kind": "images.thumbnail", "payload": payload}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_payload"
    paths = sorted(d["path"] for d in error["details"])
    assert paths == ["format", "image_base64", "sizes/0", "sizes/1"]
    assert all(d["message"] for d in error["details"])


@pytest.mark.parametrize("payload", [[1, 2], "text", 3, True])
def test_it_refuses_a_payload_that_is_not_an_object_with_400(api, payload):
    response = api.post(JOBS, {"kind": "diagnostics.noop", "payload": payload}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_payload"
    assert error["details"] == [{"path": "(root)", "message": "must be an object"}]


def test_it_refuses_a_null_payload_with_400(api):
    response = api.post(JOBS, {"kind": "diagnostics.noop", "payload": None}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_input"
    assert "payload" in error["details"]


@pytest.mark.parametrize("body", ['{"kind": "diagnostics.noop",', "not json at all", "{'kind': 'x'}"])
def test_it_refuses_malformed_json_with_400(api, body):
    response = submit_raw(api, body)

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "malformed_json"
    assert error["details"]["reason"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_it_refuses_nan_and_infinity_in_json_with_400(api, constant):
    body = '{"kind": "diagnostics.sleep", "payload": {"seconds": ' + constant + "}}"

    response = submit_raw(api, body)

    assert response.status_code == 400
    assert error_of(response)["code"] == "malformed_json"
    assert not Job.objects.exists()


def test_it_refuses_a_body_that_is_not_json_with_415(api):
    response = submit_raw(api, "kind=diagnostics.noop", content_type="text/plain")

    assert response.status_code == 415
    error = error_of(response)
    assert error["code"] == "unsupported_media_type"
    assert "text/plain" in error["message"]


def test_it_refuses_a_body_over_the_limit_with_413_before_reading_it(api, settings):
    settings.API_MAX_BODY_BYTES = 2048
    body = json.dumps({"kind": "diagnostics.noop", "payload": {"padding": "x" * 4096}})

    response = submit_raw(api, body)

    assert response.status_code == 413
    error = error_of(response)
    assert error["code"] == "body_too_large"
    assert "2048" in error["message"]
    assert not Job.objects.exists()


def test_a_body_just_under_the_limit_is_read_and_judged_on_its_merits(api, settings):
    settings.API_MAX_BODY_BYTES = 2048
    body = json.dumps({"kind": "diagnostics.noop", "payload": {"padding": "x" * 1500}})
    assert len(body) < 2048

    response = submit_raw(api, body)

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_payload"


def test_it_refuses_an_anonymous_client_with_401(db):
    response = APIClient().post(JOBS, {"kind": "diagnostics.noop", "payload": {}}, format="json")

    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"
    assert not Job.objects.exists()


@pytest.mark.parametrize("path", [JOBS, "/api/v1/kinds", f"{JOBS}/{uuid.uuid4()}"])
def test_it_refuses_an_anonymous_read_with_401(db, path):
    response = APIClient().get(path)

    assert response.status_code == 401
    assert error_of(response)["code"] == "not_authenticated"


def test_it_refuses_a_bad_token_with_401(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    response = client.get(JOBS)

    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "authentication_failed"
    assert error["message"] == "Invalid token."


def test_another_clients_job_answers_404_not_403(api):
    theirs = JobFactory(owner=UserFactory())

    detail = api.get(f"{JOBS}/{theirs.id}")
    cancel = api.post(f"{JOBS}/{theirs.id}/cancel")

    assert detail.status_code == 404
    assert error_of(detail)["code"] == "job_not_found"
    assert cancel.status_code == 404
    assert error_of(cancel)["code"] == "job_not_found"
    theirs.refresh_from_db()
    assert theirs.status == "queued"
    assert theirs.cancel_requested_at is None


def test_a_job_that_never_existed_answers_404(api):
    response = api.get(f"{JOBS}/{uuid.uuid4()}")

    assert response.status_code == 404
    assert error_of(response)["code"] == "job_not_found"


@pytest.mark.parametrize("job_id", ["not-a-uuid", "123", "0000"])
def test_a_job_id_that_is_not_a_uuid_answers_404_as_json(api, job_id):
    detail = api.get(f"{JOBS}/{job_id}")
    cancel = api.post(f"{JOBS}/{job_id}/cancel")

    for response in (detail, cancel):
        assert response.status_code == 404
        assert error_of(response)["code"] == "not_found"


def test_an_unknown_api_path_answers_404_as_json(api):
    response = api.get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


def test_a_wrong_method_answers_405_as_json(api):
    response = api.delete(JOBS)

    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


@pytest.mark.parametrize("priority", ["urgent", "", 1, None])
def test_it_refuses_an_invalid_priority_with_400(api, priority):
    response = api.post(JOBS, {"kind": "diagnostics.noop", "payload": {}, "priority": priority}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_input"
    assert "priority" in error["details"]


def test_it_refuses_max_attempts_above_the_kinds_bound_with_400(api):
    # diagnostics.noop allows 3 attempts; 4 is within the serializer's range but not the kind's.
    response = api.post(JOBS, {"kind": "diagnostics.noop", "payload": {}, "max_attempts": 4}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_max_attempts"
    assert "between 1 and 3" in error["message"]


@pytest.mark.parametrize("max_attempts", [0, -1, 101, "many", 1.5])
def test_it_refuses_a_max_attempts_that_is_not_a_sane_count_with_400(api, max_attempts):
    response = api.post(JOBS, {"kind": "diagnostics.noop", "payload": {}, "max_attempts": max_attempts}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_input"
    assert "max_attempts" in error["details"]


@pytest.mark.parametrize("run_at", ["tomorrow", "2024-13-45T00:00:00Z", 12])
def test_it_refuses_a_run_at_that_is_not_a_datetime_with_400(api, run_at):
    response = api.post(JOBS, {"kind": "diagnostics.noop", "payload": {}, "run_at": run_at}, format="json")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_input"
    assert "run_at" in error["details"]


@pytest.mark.parametrize("body", [{}, {"payload": {}}, {"kind": ""}, {"kind": "x" * 101}, [1, 2]])
def test_it_refuses_a_submission_without_a_usable_kind_with_400(api, body):
    response = api.post(JOBS, body, format="json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_input"


@pytest.mark.parametrize(
    "query",
    ["status=bogus", "created_after=yesterday", "created_before=2024-99-01", "kind=" + "k" * 101],
)
def test_it_refuses_an_invalid_list_filter_with_400(api, query):
    response = api.get(f"{JOBS}?{query}")

    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_input"
    assert query.split("=")[0] in error["details"]


def test_a_garbled_pagination_cursor_answers_404_as_json(api):
    response = api.get(f"{JOBS}?cursor=garbage")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "no.such.kind", "payload": {}},
        {"kind": "diagnostics.sleep", "payload": {"seconds": -1}},
        {"kind": "diagnostics.noop", "payload": [1]},
        {"kind": "diagnostics.noop", "payload": {}, "priority": "urgent"},
        {"kind": "diagnostics.noop", "payload": {}, "max_attempts": 4},
    ],
)
def test_a_refused_submission_writes_nothing(api, body, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post(JOBS, body, format="json")

    assert response.status_code == 400
    assert not Job.objects.exists()
    assert callbacks == []  # nothing was going to be published either


def test_a_payload_string_with_a_nul_character_is_refused_with_400_not_500(db, user):
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user)
    payload = {"image_base64": "a\u0000b", "sizes": [8]}

    response = client.post(JOBS, {"kind": "images.thumbnail", "payload": payload}, format="json")

    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_payload"


def test_deeply_nested_json_is_refused_with_400_not_500(db, user):
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(user)
    depth = 100_000  # 200 kB: well under the body limit
    body = '{"kind": "diagnostics.noop", "payload": ' + "[" * depth + "]" * depth + "}"

    response = submit_raw(client, body)

    assert response.status_code == 400
    assert error_of(response)["code"] == "malformed_json"

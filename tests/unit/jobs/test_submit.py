"""References in a payload are checked at submit (issue 14, item 16): an upload_id the client
does not have answers 400 unknown_upload naming the field, never a 202 and a job that fails
in the worker. A kind declares the check as its `check_payload` hook."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.core.errors import InvalidInput
from apps.files import services as file_services
from apps.jobs import lifecycle
from apps.jobs.models import Job
from apps.jobs.registry import registry
from tests.factories import UserFactory
from tests.helpers.api import client_for
from tests.helpers.images import png_bytes

JOBS = "/api/v1/jobs"
BATCH = "/api/v1/jobs/batch"


@pytest.fixture(autouse=True)
def media(settings, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def thumbnail_of(upload_id: str) -> dict[str, Any]:
    return {"kind": "images.thumbnail", "payload": {"upload_id": upload_id, "sizes": [32]}}


def stored_upload(owner: Any) -> str:
    return str(file_services.upload_create(owner=owner, file=SimpleUploadedFile("a.png", png_bytes())).id)


def test_an_unknown_upload_id_answers_400_unknown_upload_naming_the_field(api):
    missing = str(uuid.uuid4())

    response = api.post(JOBS, thumbnail_of(missing), format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unknown_upload"
    assert "upload_id" in error["message"]
    assert missing in error["message"]
    assert error["details"] == [{"path": "upload_id", "message": "no such upload"}]
    assert not Job.objects.exists()


def test_another_clients_upload_answers_as_an_unknown_one(api):
    theirs = stored_upload(UserFactory())

    response = api.post(JOBS, thumbnail_of(theirs), format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_upload"
    assert not Job.objects.exists()


def test_the_owners_upload_is_accepted(api, user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(JOBS, thumbnail_of(stored_upload(user)), format="json")

    assert response.status_code == 202


def test_a_batch_with_an_unknown_upload_names_the_item_and_submits_nothing(user, django_capture_on_commit_callbacks):
    api = client_for(user)
    jobs = [thumbnail_of(stored_upload(user)), thumbnail_of(str(uuid.uuid4()))]

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(BATCH, {"jobs": jobs}, format="json")

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_batch"
    assert [(e["index"], e["code"]) for e in error["details"]] == [(1, "unknown_upload")]
    assert not Job.objects.exists()


def test_an_idempotent_submission_checks_the_upload_too(api):
    response = api.post(JOBS, thumbnail_of(str(uuid.uuid4())), format="json", HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_upload"


def test_the_service_runs_the_hook_after_the_schema(user):
    with pytest.raises(InvalidInput) as caught:
        lifecycle.job_validate(kind="images.thumbnail", payload=thumbnail_of(str(uuid.uuid4()))["payload"], owner=user)

    assert caught.value.code == "unknown_upload"
    # A payload the schema refuses never reaches the hook (no query on a malformed id).
    with pytest.raises(InvalidInput) as malformed:
        lifecycle.job_validate(kind="images.thumbnail", payload={"upload_id": "nope", "sizes": [32]}, owner=user)
    assert malformed.value.code == "invalid_payload"


def test_an_inline_image_needs_no_query(user, django_assert_num_queries):
    payload = {"image_base64": "aGk=", "sizes": [32]}

    with django_assert_num_queries(0):
        lifecycle.job_validate(kind="images.thumbnail", payload=payload, owner=user)


def test_a_kind_without_the_hook_costs_no_query(user, django_assert_num_queries):
    assert registry.get("diagnostics.noop").check_payload is None

    with django_assert_num_queries(0):
        lifecycle.job_validate(kind="diagnostics.noop", payload={}, owner=user)


def test_an_upload_reference_costs_one_query(user, django_assert_num_queries):
    payload = {"upload_id": stored_upload(user), "sizes": [32]}

    with django_assert_num_queries(1):
        lifecycle.job_validate(kind="images.thumbnail", payload=payload, owner=user)

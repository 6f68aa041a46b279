"""Files: a client uploads one for a kind that takes a file, and downloads the files a job
made; through Django's storage API, each to its owner only."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from apps.files import services as file_services
from apps.files.models import Upload
from apps.jobs.models import JobStatus
from apps.jobs.registry import PermanentError
from tests.factories import JobFactory, UserFactory
from tests.helpers.api import client_for
from tests.helpers.images import FakeContext, png_base64, png_bytes
from workers.kinds import images

UPLOADS = "/api/v1/uploads"


@pytest.fixture(autouse=True)
def media(settings, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def upload(api: APIClient, data: bytes, name: str = "picture.png", content_type: str = "image/png") -> Any:
    return api.post(UPLOADS, {"file": SimpleUploadedFile(name, data, content_type=content_type)}, format="multipart")


# --- uploads ----------------------------------------------------------------------------------


def test_an_upload_answers_201_with_its_id_size_digest_and_type(api, user, media):
    data = png_bytes()

    response = upload(api, data)

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "size", "sha256", "content_type", "created_at", "links"}
    assert body["links"] == {
        "self": f"http://testserver/api/v1/uploads/{body['id']}",
        "content": f"http://testserver/api/v1/uploads/{body['id']}/content",
    }
    assert response["Location"] == body["links"]["self"]
    assert body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["content_type"] == "image/png"
    stored = Upload.objects.get(id=body["id"])
    assert stored.owner == user
    assert "picture" not in stored.file.name  # never the client's name
    with default_storage.open(stored.file.name, "rb") as handle:
        assert handle.read() == data
    assert (media / stored.file.name).is_file()


def test_a_declared_type_that_is_not_a_media_type_is_stored_as_octet_stream(api):
    response = upload(api, b"hello", name="x.bin", content_type="not a type; <script>")

    assert response.status_code == 201
    assert response.json()["content_type"] == "application/octet-stream"


def test_an_upload_over_the_limit_is_refused_with_413(api, user, settings):
    settings.UPLOAD_MAX_BYTES = 2048

    response = upload(api, b"x" * 4096)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert response.json()["error"]["details"] == {"size": 4096, "limit": 2048}
    assert not Upload.objects.filter(owner=user).exists()


def test_the_body_limit_lets_uploads_past_the_json_limit_but_not_past_their_own(api, settings):
    settings.API_MAX_BODY_BYTES = 1024
    settings.UPLOAD_MAX_BYTES = 200_000

    assert upload(api, b"y" * 100_000).status_code == 201
    refused = api.post(UPLOADS, data=b"z", content_type="multipart/form-data; boundary=x", CONTENT_LENGTH="10000000")
    assert refused.status_code == 413
    json_refused = api.post("/api/v1/jobs", {"kind": "diagnostics.noop", "payload": {"pad": "p" * 2000}}, format="json")
    assert json_refused.status_code == 413


def test_an_upload_without_a_file_is_refused_with_400(api):
    response = api.post(UPLOADS, {"other": "x"}, format="multipart")

    assert response.status_code == 400
    assert "file" in response.json()["error"]["details"]


def test_an_upload_as_json_is_refused_with_415(api):
    response = api.post(UPLOADS, {"file": "aGk="}, format="json")

    assert response.status_code == 415


def test_an_upload_needs_a_token(db):
    response = upload(APIClient(), b"hi")

    assert response.status_code == 401


# --- images.thumbnail from an upload ----------------------------------------------------------


def test_a_thumbnail_job_reads_its_image_from_an_upload_and_writes_files_to_storage(user, media):
    stored = file_services.upload_create(owner=user, file=SimpleUploadedFile("a.png", png_bytes(300, 150)))
    job = JobFactory(owner=user, kind="images.thumbnail")

    result = images.thumbnail(FakeContext(job_id=str(job.id)), {"upload_id": str(stored.id), "sizes": [64]})

    assert result["source"] == {"width": 300, "height": 150}
    (thumb,) = result["thumbnails"]
    assert thumb["file"] == "thumbnail-64.png"
    assert default_storage.exists(f"jobs/{job.id}/thumbnail-64.png")
    assert thumb["sha256"] == hashlib.sha256((media / "jobs" / str(job.id) / thumb["file"]).read_bytes()).hexdigest()


def test_a_thumbnail_job_may_not_read_another_clients_upload(user):
    stranger = UserFactory()
    theirs = file_services.upload_create(owner=stranger, file=SimpleUploadedFile("a.png", png_bytes()))
    job = JobFactory(owner=user, kind="images.thumbnail")

    with pytest.raises(PermanentError, match="does not exist"):
        images.thumbnail(FakeContext(job_id=str(job.id)), {"upload_id": str(theirs.id), "sizes": [16]})

    assert not default_storage.exists(f"jobs/{job.id}")


def test_a_thumbnail_job_with_an_upload_id_is_accepted_over_the_api(api, django_capture_on_commit_callbacks):
    upload_id = upload(api, png_bytes()).json()["id"]

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/jobs",
            {"kind": "images.thumbnail", "payload": {"upload_id": upload_id, "sizes": [32]}},
            format="json",
        )

    assert response.status_code == 202


# --- downloads --------------------------------------------------------------------------------


def finished_thumbnail_job(owner: Any) -> Any:
    job = JobFactory(owner=owner, kind="images.thumbnail", status=JobStatus.SUCCEEDED)
    payload = {"image_base64": png_base64(80, 40), "sizes": [32, 16]}
    job.result = images.thumbnail(FakeContext(job_id=str(job.id)), payload)
    job.save()
    return job


def test_the_owner_downloads_a_file_a_job_made(api, user):
    job = finished_thumbnail_job(user)
    entry = job.result["thumbnails"][0]

    response = api.get(f"/api/v1/jobs/{job.id}/files/{entry['file']}", HTTP_ACCEPT="image/png")

    assert response.status_code == 200
    data = b"".join(response.streaming_content)
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == 'attachment; filename="thumbnail-32.png"'
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (32, 16)


def test_anyone_else_gets_404_for_a_jobs_file(user):
    job = finished_thumbnail_job(user)

    response = client_for(UserFactory()).get(f"/api/v1/jobs/{job.id}/files/thumbnail-32.png")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"


@pytest.mark.parametrize("name", ["thumbnail-64.png", "secret.txt", "..", "%2e%2e%2fetc%2fpasswd"])
def test_a_name_not_in_the_jobs_result_is_404(api, user, name):
    job = finished_thumbnail_job(user)

    response = api.get(f"/api/v1/jobs/{job.id}/files/{name}")

    assert response.status_code == 404


def test_a_file_gone_from_storage_is_404(api, user):
    job = finished_thumbnail_job(user)
    default_storage.delete(f"jobs/{job.id}/thumbnail-16.png")

    response = api.get(f"/api/v1/jobs/{job.id}/files/thumbnail-16.png")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "file_not_found"


def test_a_job_file_name_must_be_a_plain_name():
    with pytest.raises(ValueError, match="not a valid job file name"):
        file_services.job_file_write(job_id="j", name="../escape", data=b"x")


# --- reading an upload back, and a job's files in its JSON -------------------------------------


def test_the_owner_reads_an_upload_back_and_downloads_its_bytes(api):
    data = png_bytes()
    made = upload(api, data).json()

    shown = api.get(made["links"]["self"])
    content = api.get(made["links"]["content"])

    assert shown.status_code == 200
    assert shown.json() == made
    assert content.status_code == 200
    assert b"".join(content.streaming_content) == data
    assert content["Content-Type"] == "image/png"
    # An attachment, never shown inline: the client declared the type.
    assert content["Content-Disposition"] == f'attachment; filename="upload-{made["id"]}.png"'


@pytest.mark.parametrize("path", ["", "/content"])
def test_anyone_else_and_an_unknown_id_get_404_for_an_upload(api, path):
    made = upload(api, b"mine").json()

    for client, upload_id in ((client_for(UserFactory()), made["id"]), (api, "0" * 8 + "-0000-0000-0000-" + "0" * 12)):
        response = client.get(f"{UPLOADS}/{upload_id}{path}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "upload_not_found"


def test_an_upload_whose_bytes_are_gone_is_404(api):
    made = upload(api, b"short-lived").json()
    default_storage.delete(Upload.objects.get(id=made["id"]).file.name)

    response = api.get(made["links"]["content"])

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "upload_not_found"


def test_a_jobs_json_lists_the_files_its_result_offers_with_their_download_urls(api, user):
    job = finished_thumbnail_job(user)

    body = api.get(f"/api/v1/jobs/{job.id}").json()

    names = sorted(entry["file"] for entry in job.result["thumbnails"])
    assert body["files"] == [
        {"name": name, "url": f"http://testserver/api/v1/jobs/{job.id}/files/{name}"} for name in names
    ]
    for entry in body["files"]:  # each URL is the download, for the owner
        response = api.get(entry["url"])
        assert response.status_code == 200
        assert b"".join(response.streaming_content)


def test_a_job_whose_result_offers_no_file_lists_none(api, user):
    job = JobFactory(owner=user, status=JobStatus.SUCCEEDED, result={"answer": 42, "nested": [{"note": "x"}]})

    assert api.get(f"/api/v1/jobs/{job.id}").json()["files"] == []

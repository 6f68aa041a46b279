"""Upload a picture, a real worker makes thumbnails of it through default_storage, and only
its owner downloads them."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from rest_framework.authtoken.models import Token

from tests.factories import UserFactory
from tests.helpers.images import png_base64
from tests.processes import wait_for

pytestmark = pytest.mark.integration


def session_for(username: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {Token.objects.create(user=UserFactory(username=username)).key}"
    return session


def test_an_uploaded_picture_becomes_thumbnails_its_owner_alone_downloads(
    platform: Any, live_server: Any, settings: Any, tmp_path: Path
) -> None:
    settings.MEDIA_ROOT = tmp_path  # the web side (this process) and the worker share the storage
    platform.worker(env={"MEDIA_ROOT": str(tmp_path)})
    owner, stranger = session_for("owner"), session_for("stranger")
    picture = base64.b64decode(png_base64(200, 100))

    uploaded = owner.post(
        f"{live_server.url}/api/v1/uploads", files={"file": ("p.png", picture, "image/png")}, timeout=10
    )
    assert uploaded.status_code == 201, uploaded.text
    upload_id = uploaded.json()["id"]
    submitted = owner.post(
        f"{live_server.url}/api/v1/jobs",
        json={"kind": "images.thumbnail", "payload": {"upload_id": upload_id, "sizes": [50]}},
        timeout=10,
    )
    assert submitted.status_code == 202, submitted.text
    url = submitted.headers["Location"]

    def finished() -> dict[str, Any] | None:
        body = owner.get(url, params={"wait": 5}, timeout=15).json()
        return body if body["status"] in ("succeeded", "failed", "cancelled") else None

    job = wait_for(finished, timeout=60, what="the thumbnail job to finish")
    assert job["status"] == "succeeded", job["error"]
    (thumb,) = job["result"]["thumbnails"]
    assert (thumb["width"], thumb["height"]) == (50, 25)

    download = owner.get(f"{url}/files/{thumb['file']}", timeout=10)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() == thumb["sha256"]
    with Image.open(io.BytesIO(download.content)) as image:
        assert image.size == (50, 25)
    assert stranger.get(f"{url}/files/{thumb['file']}", timeout=10).status_code == 404

    # Someone else's upload cannot be used: refused at submit, naming the field (issue 14).
    theirs = stranger.post(
        f"{live_server.url}/api/v1/jobs",
        json={"kind": "images.thumbnail", "payload": {"upload_id": upload_id, "sizes": [50]}},
        timeout=10,
    )
    assert theirs.status_code == 400, theirs.text
    assert theirs.json()["error"]["code"] == "unknown_upload"

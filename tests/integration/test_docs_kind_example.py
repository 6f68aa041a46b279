"""docs/kinds.md's "How to add a kind" example works as written: its code block, taken from
the page verbatim, becomes a kind module that a real worker loads through JOB_KIND_MODULES;
a job of that kind submitted through the API runs, notifies its URL once, and its owner
downloads the file it wrote through the API."""

from __future__ import annotations

import csv
import importlib
import io
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from rest_framework.authtoken.models import Token

from apps.jobs.registry import registry
from tests.factories import UserFactory
from tests.processes import ROOT, wait_for

pytestmark = pytest.mark.integration

MODULE = "docs_kind_example_reports"
KIND = "reports.csv_export"
BLOCK = re.compile(
    r"<!-- docs-kind-example:[^>]*-->\n```python\n(?P<code>.*?)\n```\n<!-- /docs-kind-example -->", re.DOTALL
)


def example_code() -> str:
    text = (ROOT / "docs" / "kinds.md").read_text()
    found = BLOCK.findall(text)
    assert len(found) == 1, "docs/kinds.md must hold exactly one marked example block"
    return found[0] + "\n"


@pytest.fixture
def example_module(tmp_path: Path) -> Iterator[Path]:
    """The example as a module on this process's path (the API validates the kind here too),
    removed again afterwards so no other test sees the kind."""
    directory = tmp_path / "kinds"
    directory.mkdir()
    (directory / f"{MODULE}.py").write_text(example_code())
    sys.path.insert(0, str(directory))
    try:
        importlib.import_module(MODULE)
        assert KIND in registry
        yield directory
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop(MODULE, None)
        registry._kinds.pop(KIND, None)


def test_the_documented_kind_runs_in_a_worker_and_its_file_downloads_through_the_api(
    platform: Any, live_server: Any, settings: Any, tmp_path: Path, example_module: Path, receiver: Any
) -> None:
    media = tmp_path / "media"
    settings.MEDIA_ROOT = media  # the web side (this process) and the worker share the storage
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the notify_url is the test's receiver, on 127.0.0.1
    pythonpath = os.pathsep.join(p for p in (str(example_module), os.environ.get("PYTHONPATH", "")) if p)
    platform.worker(
        env={
            "MEDIA_ROOT": str(media),
            "PYTHONPATH": pythonpath,
            "JOB_KIND_MODULES": ",".join([*settings.JOB_KIND_MODULES, MODULE]),
            "WEBHOOK_ALLOW_PRIVATE": "1",
        }
    )
    session = requests.Session()
    session.headers["Authorization"] = f"Token {Token.objects.create(user=UserFactory(username='author')).key}"
    columns = ["id", "name"]
    rows = [[number, f"row {number}"] for number in range(1, 1201)]  # past 500: progress and the cancel check

    submitted = session.post(
        f"{live_server.url}/api/v1/jobs",
        json={"kind": KIND, "payload": {"columns": columns, "rows": rows, "notify_url": receiver.url}},
        timeout=10,
    )
    assert submitted.status_code == 202, submitted.text
    url = submitted.headers["Location"]

    def finished() -> dict[str, Any] | None:
        body = session.get(url, params={"wait": 5}, timeout=15).json()
        return body if body["status"] in ("succeeded", "failed", "cancelled") else None

    job = wait_for(finished, timeout=60, what="the documented kind's job to finish")
    assert job["status"] == "succeeded", job["error"]
    assert job["result"] == {"file": "export.csv", "rows": 1200, "notified": 200}

    (post,) = receiver.posts()
    assert post.headers["Idempotency-Key"] == f"job-{job['id']}"

    download = session.get(f"{url}/files/{job['result']['file']}", timeout=10)
    assert download.status_code == 200, download.text
    assert list(csv.reader(io.StringIO(download.content.decode()))) == [columns, *[[str(a), b] for a, b in rows]]

    # A stranger cannot fetch it, and the kind refuses a notify_url it may not call at submit.
    stranger = requests.Session()
    stranger.headers["Authorization"] = f"Token {Token.objects.create(user=UserFactory(username='other')).key}"
    assert stranger.get(f"{url}/files/export.csv", timeout=10).status_code == 404
    settings.WEBHOOK_ALLOW_PRIVATE = False
    refused = session.post(
        f"{live_server.url}/api/v1/jobs",
        json={"kind": KIND, "payload": {"columns": columns, "rows": [], "notify_url": "http://127.0.0.1:9/"}},
        timeout=10,
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "unsafe_url"

"""Flower as operators meet it: behind basic auth, showing each kind as its own task name
and every queue's depth, fed by the real worker's events."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pytest
from django.contrib.auth import get_user_model

from apps.jobs.lifecycle import job_submit
from tests.browser.conftest import flower  # noqa: F401  (the fixture: Flower as the Procfile runs it)
from tests.integration.helpers import wait_terminal
from tests.processes import wait_for

pytestmark = pytest.mark.integration


def get(flower, path: str, *, auth: bool = True) -> tuple[int, object]:  # noqa: F811
    request = urllib.request.Request(f"http://127.0.0.1:{flower.port}{path}")
    if auth:
        token = base64.b64encode(f"{flower.user}:{flower.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def test_flower_refuses_anyone_without_the_credentials(flower):  # noqa: F811
    assert get(flower, "/api/workers", auth=False)[0] == 401
    assert get(flower, "/api/tasks", auth=False)[0] == 401
    assert get(flower, "/", auth=False)[0] == 401
    assert get(flower, "/api/workers")[0] == 200


def test_flower_shows_each_kind_as_its_task_name_and_every_queues_depth(platform, flower):  # noqa: F811
    owner = get_user_model().objects.create(username="flower-client")
    platform.worker()
    ids = [
        str(job_submit(owner=owner, kind="diagnostics.noop", payload={}).id),
        str(job_submit(owner=owner, kind="diagnostics.sleep", payload={"seconds": 0.1}).id),
    ]
    wait_terminal(ids, timeout=30)

    def names() -> set[str] | None:
        status, tasks = get(flower, "/api/tasks")
        seen = {task["name"] for task in (tasks or {}).values()} if status == 200 else set()
        return seen if {"diagnostics.noop", "diagnostics.sleep"} <= seen else None

    assert wait_for(names, timeout=30, what="Flower to list the kinds as task names")

    def depths() -> dict[str, int] | None:
        status, body = get(flower, "/api/queues/length")
        if status != 200 or not body:
            return None
        found = {q["name"]: q["messages"] for q in body.get("active_queues", [])}
        return found if {"high", "default", "low", "dead_letter"} <= set(found) else None

    queues = wait_for(depths, timeout=30, what="Flower to report the queues' depths")
    assert all(isinstance(n, int) for n in queues.values())

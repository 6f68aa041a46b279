"""Flower as operators meet it: behind basic auth (its credentials on no command line), showing
each kind as its own task name and every queue's depth, and each job, found by its id, in the
state its latest attempt ended in; fed by the real worker's events."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from apps.jobs import lifecycle
from apps.jobs.lifecycle import job_submit
from apps.jobs.models import Job, JobStatus
from apps.jobs.publish import JobMessage, publish_jobs_rollback_unsafe
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


def task_info(flower, task_id: str) -> dict | None:  # noqa: F811
    status, info = get(flower, f"/api/task/info/{task_id}")
    return info if status == 200 else None


def in_state(flower, task_id: str, state: str, what: str) -> dict:  # noqa: F811
    """Wait for Flower to show the task in `state`; fail with what it showed instead."""
    seen: list[dict | None] = [None]

    def reached() -> dict | None:
        seen[0] = task_info(flower, task_id)
        return seen[0] if seen[0] and seen[0].get("state") == state else None

    try:
        return wait_for(reached, timeout=30, interval=0.3, what=what)
    except AssertionError:
        shown = {k: (seen[0] or {}).get(k) for k in ("state", "exception", "result")}
        raise AssertionError(f"{what}: Flower shows {shown}") from None


def listed(flower, query: str) -> dict:  # noqa: F811
    status, tasks = get(flower, f"/api/tasks?{query}")
    assert status == 200
    return tasks or {}


def test_flower_shows_each_attempt_as_it_ended_under_the_jobs_id(platform, flower):  # noqa: F811
    owner = get_user_model().objects.create(username="flower-states")
    worker = platform.worker()  # no beat yet: a retrying job stays retrying until one starts
    succeeds = str(job_submit(owner=owner, kind="diagnostics.noop", payload={}).id)
    fails = str(job_submit(owner=owner, kind="diagnostics.flaky", payload={"fail_times": 1, "permanent": True}).id)
    retries = str(job_submit(owner=owner, kind="diagnostics.flaky", payload={"fail_times": 1}).id)

    done = in_state(flower, succeeds, "SUCCESS", "the succeeded job under its id")
    assert done["name"] == "diagnostics.noop"

    failed = in_state(flower, fails, "FAILURE", "the failed job as a failure")
    assert Job.objects.get(id=fails).status == JobStatus.FAILED
    assert failed["exception"] == "PermanentError('failing on purpose, attempt 1 of the first 1')"
    assert fails in listed(flower, "state=FAILURE"), "Flower's failures leave out the failed job"

    retried = in_state(flower, retries, "RETRY", "the failed attempt of a retrying job as a retry")
    assert Job.objects.get(id=retries).status == JobStatus.RETRYING
    assert "RetryableError('failing on purpose, attempt 1 of the first 1')" in retried["exception"]
    assert retries in listed(flower, "state=RETRY")

    # The operator's search box and API find a job by its id.
    assert set(listed(flower, f"search={urllib.parse.quote(fails)}")) == {fails}

    platform.beat()  # promotes the retry and publishes the job again, under the same task id
    assert wait_terminal([retries], timeout=30)[retries].status == JobStatus.SUCCEEDED
    again = in_state(flower, retries, "SUCCESS", "the retried job's second attempt as a success")
    assert again["retried"] is not None, "the retry is gone from the task's history"

    # A duplicate message of a finished job is dropped, and leaves its state alone.
    first_start = done["started"]
    assert publish_jobs_rollback_unsafe([JobMessage.of(Job.objects.get(id=succeeds))]) == [succeeds]
    wait_for(
        lambda: (task_info(flower, succeeds) or {}).get("started", 0) > first_start,
        timeout=30,
        what="Flower to hear the duplicate start",
    )
    wait_for(lambda: f"job {succeeds}: nothing to claim" in worker.log(), timeout=30, what="the duplicate's drop")
    assert (task_info(flower, succeeds) or {})["state"] == "SUCCESS"


def test_flower_shows_a_job_cancelled_while_running_as_revoked(platform, flower):  # noqa: F811
    owner = get_user_model().objects.create(username="flower-cancel")
    platform.worker()
    job = job_submit(owner=owner, kind="diagnostics.sleep", payload={"seconds": 60})
    job_id = str(job.id)
    in_state(flower, job_id, "STARTED", "the sleeping job to start")

    lifecycle.job_cancel(job=Job.objects.get(id=job_id))

    assert wait_terminal([job_id], timeout=30)[job_id].status == JobStatus.CANCELLED
    in_state(flower, job_id, "REVOKED", "the cancelled job as revoked")


def post(flower, path: str) -> tuple[int, object]:  # noqa: F811
    token = base64.b64encode(f"{flower.user}:{flower.password}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{flower.port}{path}", data=b"", method="POST", headers={"Authorization": f"Basic {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()[:300]


def test_revoking_from_flower_cancels_the_job_queued_or_running(platform, flower):  # noqa: F811
    """An operator finds each job in Flower by its id and presses Revoke (Flower's task API):
    a queued job is cancelled before it runs; a running one, revoked with terminate, is
    cancelled with its attempt recorded as revoked."""
    owner = get_user_model().objects.create(username="flower-revoke")
    platform.worker(concurrency=1)
    running = str(job_submit(owner=owner, kind="diagnostics.sleep", payload={"seconds": 60}).id)
    queued = str(job_submit(owner=owner, kind="diagnostics.noop", payload={}).id)
    in_state(flower, running, "STARTED", "the sleeping job to start")
    wait_for(lambda: get(flower, "/api/workers?refresh=1")[1], timeout=20, what="Flower to see the worker")

    assert post(flower, f"/api/task/revoke/{queued}")[0] == 200
    assert post(flower, f"/api/task/revoke/{running}?terminate=true")[0] == 200

    jobs = wait_terminal([running, queued], timeout=30)
    assert jobs[queued].status == JobStatus.CANCELLED
    assert (jobs[queued].attempts, jobs[queued].error_type) == (0, "Revoked")
    assert jobs[running].status == JobStatus.CANCELLED
    assert [a.outcome for a in jobs[running].attempt_history.all()] == ["revoked"]
    in_state(flower, running, "REVOKED", "the terminated job as revoked")


def test_flowers_password_is_on_no_command_line(flower):  # noqa: F811
    """Anyone on the machine can read a command line (`ps`); the credentials go through
    Flower's environment, readable by its own user only."""

    def flower_command_lines() -> list[str]:
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                argv = cmdline.read_bytes().split(b"\0")
            except OSError:
                continue  # gone, or not ours to read
            words = [a.decode(errors="replace") for a in argv]
            if "flower" in words and f"--port={flower.port}" in words:
                found.append(" ".join(words))
        return found

    (command,) = wait_for(flower_command_lines, timeout=10, what="Flower's process")
    assert flower.password not in command, command
    assert "basic-auth" not in command, command
    assert get(flower, "/api/workers", auth=False)[0] == 401
    assert get(flower, "/api/workers")[0] == 200

"""The Python client and its CLI (clients/python, issue 19) against a real stack: the web process
as the Procfile runs it, a real worker, PostgreSQL and Redis. What a user of the client relies
on: submit and wait, failures and cancels as statuses, batches, every page of a list, the API's
errors as typed exceptions, idempotent submissions, and 429s retried as Retry-After says."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import pty
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.authtoken.models import Token

from apps.jobs.models import Job
from tests.integration.test_web_server import start_web

# The client is its own package (clients/python), not installed into the project's venv: import
# it from source, as the CLI subprocesses below do through PYTHONPATH.
CLIENT_SRC = str(Path(__file__).resolve().parents[2] / "clients" / "python" / "src")
if CLIENT_SRC not in sys.path:
    sys.path.insert(0, CLIENT_SRC)

import jobplatform_client as jp  # noqa: E402

pytestmark = pytest.mark.integration


class _PlatformWithEnv:
    """The platform as start_web sees it, with extra environment for the web process."""

    def __init__(self, platform, **extra: str) -> None:
        self.platform, self.extra = platform, extra

    def env(self, **more: str) -> dict[str, str]:
        return self.platform.env(**{**self.extra, **more})


@pytest.fixture
def token(platform) -> str:
    user = get_user_model().objects.create_user("python-client-test", password="x")
    return Token.objects.create(user=user).key


@pytest.fixture
def url(platform) -> Iterator[str]:
    """The web process and one worker."""
    process, port = start_web(platform, "web-python-client")
    platform.worker(concurrency=2)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def test_submit_wait_fail_cancel_batch_and_list_with_the_sync_client(url, token):
    with jp.Client(url, token=token) as client:
        job = client.submit("diagnostics.noop", {})
        assert job.status in ("queued", "running", "succeeded")
        assert job.wait(timeout=60) is job
        assert (job.status, job.result, job.error) == ("succeeded", {}, None)
        assert job.files() == []

        slept = client.submit("diagnostics.sleep", {"seconds": 1}, priority="low").wait(60)
        assert slept.status == "succeeded"
        assert slept.progress["percent"] == 100.0
        assert client.get(slept.id).data["history"][0]["outcome"] == "succeeded"

        failed = client.submit("diagnostics.flaky", {"fail_times": 5, "permanent": True}).wait(60)
        assert failed.status == "failed"
        assert failed.error["message"]

        long = client.submit("diagnostics.sleep", {"seconds": 60})
        with pytest.raises(jp.WaitTimeout) as timed_out:
            long.wait(timeout=1)
        assert timed_out.value.job is long
        assert long.cancel().cancel_requested_at
        assert long.wait(timeout=60).status == "cancelled"
        with pytest.raises(jp.Conflict) as conflict:
            long.cancel()
        assert (conflict.value.status, conflict.value.code) == (409, "job_terminal")

        batch = client.batch([("diagnostics.noop", {}), {"kind": "diagnostics.sleep", "payload": {"seconds": 0}}])
        assert [j.kind for j in batch] == ["diagnostics.noop", "diagnostics.sleep"]
        assert {j.wait(60).status for j in batch} == {"succeeded"}

        # Seven jobs in all, listed two to a page: every one, newest first, across four pages.
        listed = [j.id for j in client.jobs(page_size=2)]
        assert listed == [j.id for j in [*reversed(batch), long, failed, slept, job]]
        assert [j.id for j in client.jobs(status=["failed", "cancelled"], page_size=1)] == [long.id, failed.id]
        assert [j.id for j in client.jobs(kind="diagnostics.flaky")] == [failed.id]


def test_errors_are_typed_and_submissions_are_idempotent(url, token):
    with jp.Client(url, token=token) as client:
        with pytest.raises(jp.NotFound) as missing:
            client.get("00000000-0000-0000-0000-000000000000")
        assert (missing.value.status, missing.value.code) == (404, "job_not_found")

        with pytest.raises(jp.InvalidInput) as invalid:
            client.submit("diagnostics.sleep", {"seconds": -1})
        assert invalid.value.code == "invalid_payload"
        assert invalid.value.details == [{"path": "seconds", "message": "-1 is less than the minimum of 0"}]

        with pytest.raises(jp.InvalidInput) as unknown:
            client.submit("no.such.kind", {})
        assert unknown.value.code == "unknown_kind"
        assert "diagnostics.noop" in unknown.value.details["known_kinds"]

        first = client.submit("diagnostics.noop", {}, idempotency_key="order-42")
        again = client.submit("diagnostics.noop", {}, idempotency_key="order-42")
        assert (again.id, first.replayed, again.replayed) == (first.id, False, True)
        with pytest.raises(jp.IdempotencyKeyReused) as reused:
            client.submit("diagnostics.sleep", {"seconds": 0}, idempotency_key="order-42")
        assert reused.value.details["job_id"] == first.id
        # Without a key of the caller's, each submission is its own job.
        assert client.submit("diagnostics.noop", {}).id != client.submit("diagnostics.noop", {}).id

    with jp.Client(url, token="not-a-token") as stranger, pytest.raises(jp.AuthenticationFailed) as refused:
        stranger.get(first.id)
    assert refused.value.status == 401


def test_the_async_client_does_the_same(url, token):
    async def scenario() -> None:
        async with jp.AsyncClient(url, token=token) as client:
            job = await (await client.submit("diagnostics.sleep", {"seconds": 1})).wait(timeout=60)
            assert (job.status, job.result) == ("succeeded", {"slept": 1.0})

            failed = await (await client.submit("diagnostics.flaky", {"fail_times": 5, "permanent": True})).wait(60)
            assert failed.status == "failed"
            assert failed.error["message"]
            await failed.retry()
            assert (failed.status, (await failed.wait(60)).status) == ("queued", "failed")
            with pytest.raises(jp.Conflict) as refused:
                await client.retry(job.id)
            assert refused.value.code == "job_not_failed"

            long = await client.submit("diagnostics.sleep", {"seconds": 60})
            await long.cancel()
            assert (await long.wait(60)).status == "cancelled"

            batch = await client.batch([("diagnostics.noop", {})] * 3)
            assert [(await j.wait(60)).status for j in batch] == ["succeeded"] * 3

            listed = [j.id async for j in client.jobs(page_size=2)]
            assert listed == [j.id for j in [*reversed(batch), long, failed, job]]

            with pytest.raises(jp.NotFound):
                await client.get("00000000-0000-0000-0000-000000000000")

    asyncio.run(scenario())


def test_files_watch_workflows_and_schedules(url, token, tmp_path):
    from PIL import Image

    image = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(image, format="PNG")
    with jp.Client(url, token=token) as client:
        payload = {"image_base64": base64.b64encode(image.getvalue()).decode(), "sizes": [16]}
        thumbnail = client.submit("images.thumbnail", payload).wait(60)
        assert thumbnail.status == "succeeded", thumbnail.error
        [file] = thumbnail.files()
        assert client.download(file["url"]).startswith(b"\x89PNG")
        saved = client.download(file["url"], str(tmp_path / "thumb.png"))
        assert Path(saved).read_bytes() == thumbnail.download(file["name"])
        assert client.files(thumbnail.id) == [file]

        # Watching (server-sent events) yields the job at each change, and stops when it ends.
        sleeper = client.submit("diagnostics.sleep", {"seconds": 1})
        states = [state["status"] for state in client.watch(sleeper.id, timeout=60)]
        assert states[-1] == "succeeded"
        assert states[0] in ("queued", "running")

        workflow = client.create_workflow(
            [
                {"ref": "a", "kind": "diagnostics.noop", "payload": {}},
                {"ref": "b", "kind": "diagnostics.noop", "payload": {}, "depends_on": ["a"]},
            ],
            name="chain",
        )
        deadline = time.monotonic() + 60
        while workflow["status"] == "running" and time.monotonic() < deadline:
            workflow = client.get_workflow(workflow["id"], wait=5)
        assert (workflow["status"], workflow["counts"]["succeeded"]) == ("succeeded", 2)
        assert [w["id"] for w in client.workflows(page_size=1)] == [workflow["id"]]
        with pytest.raises(jp.Conflict):
            client.cancel_workflow(workflow["id"])
        with pytest.raises(jp.InvalidInput) as cycle:
            client.create_workflow([{"ref": "p", "kind": "diagnostics.noop", "payload": {}, "depends_on": ["p"]}])
        assert cycle.value.code == "workflow_cycle"

        schedule = client.create_schedule("diagnostics.noop", {}, every_seconds=3600)
        assert client.get_schedule(schedule["id"])["every_seconds"] == 3600
        assert client.update_schedule(schedule["id"], enabled=False)["enabled"] is False
        assert [s["id"] for s in client.schedules()] == [schedule["id"]]
        client.delete_schedule(schedule["id"])
        with pytest.raises(jp.NotFound) as gone:
            client.get_schedule(schedule["id"])
        assert gone.value.code == "schedule_not_found"

    async def watch_async() -> list[str]:
        async with jp.AsyncClient(url, token=token) as aclient:
            job = await aclient.submit("diagnostics.sleep", {"seconds": 1})
            return [state["status"] async for state in aclient.watch(job.id, timeout=60)]

    assert asyncio.run(watch_async())[-1] == "succeeded"


def cli(url: str, token: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, JOBPLATFORM_URL=url, JOBPLATFORM_TOKEN=token, PYTHONPATH=CLIENT_SRC)
    return subprocess.run(
        [sys.executable, "-m", "jobplatform_client.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_the_cli_submits_waits_and_exits_by_the_jobs_outcome(url, token):
    done = cli(url, token, "submit", "diagnostics.sleep", "--payload", '{"seconds": 1}', "--wait")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert (job["status"], job["result"]) == ("succeeded", {"slept": 1.0})
    assert done.stderr == ""  # no progress bar when stderr is not a terminal

    failed = cli(
        url, token, "submit", "diagnostics.flaky", "--payload", '{"fail_times": 5, "permanent": true}', "--wait"
    )
    assert failed.returncode == 1
    failed_id = json.loads(failed.stdout)["id"]
    assert json.loads(failed.stdout)["status"] == "failed"
    # A failed job runs again with a fresh allowance (and fails again: it is asked to fail 5 times).
    again = cli(url, token, "retry", failed_id)
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["status"], json.loads(again.stdout)["max_attempts"]) == (
        "queued",
        6,
    )  # 1 of 5 used, then 5 more
    assert cli(url, token, "watch", failed_id).returncode == 1
    assert [a["number"] for a in json.loads(cli(url, token, "get", failed_id).stdout)["history"]] == [1, 2]
    not_failed = cli(url, token, "retry", job["id"])
    assert not_failed.returncode == 2
    assert "job_not_failed" in not_failed.stderr
    # Each line the job's handler logged, one JSON object per line (this kind logs none).
    Job.objects.get(id=failed_id).log_lines.create(
        attempt=2, seq=1, at=timezone.now(), level="INFO", logger="t", message="from attempt 2"
    )
    logged = cli(url, token, "logs", failed_id, "--attempt", "2")
    assert [json.loads(line)["message"] for line in logged.stdout.splitlines()] == ["from attempt 2"]

    queued = cli(url, token, "submit", "diagnostics.sleep", "--payload", '{"seconds": 60}')
    assert queued.returncode == 0
    long = json.loads(queued.stdout)["id"]
    timed_out = cli(url, token, "watch", long, "--timeout", "1")
    assert timed_out.returncode == 1
    assert json.loads(timed_out.stdout.splitlines()[0])["id"] == long
    assert cli(url, token, "cancel", long).returncode == 0
    watched = cli(url, token, "watch", long)
    assert watched.returncode == 1  # it ended cancelled
    assert json.loads(watched.stdout.splitlines()[-1])["status"] == "cancelled"

    got = cli(url, token, "get", job["id"])
    assert (got.returncode, json.loads(got.stdout)["status"]) == (0, "succeeded")

    listed = cli(url, token, "list", "--limit", "2")
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [long, json.loads(failed.stdout)["id"]]
    failures = cli(url, token, "list", "--status", "failed", "--array")
    assert [row["status"] for row in json.loads(failures.stdout)] == ["failed"]

    missing = cli(url, token, "get", "00000000-0000-0000-0000-000000000000")
    assert missing.returncode == 2
    assert "job_not_found" in missing.stderr
    bad = cli(url, token, "submit", "diagnostics.sleep", "--payload", '{"seconds": -1}')
    assert (bad.returncode, bad.stdout) == (2, "")
    assert "invalid_payload" in bad.stderr

    # On a terminal, stderr shows a progress bar redrawn in place; stdout is still the job alone.
    primary, replica = pty.openpty()
    env = dict(os.environ, JOBPLATFORM_URL=url, JOBPLATFORM_TOKEN=token, PYTHONPATH=CLIENT_SRC)
    argv = [
        sys.executable,
        "-m",
        "jobplatform_client.cli",
        "submit",
        "diagnostics.sleep",
        "--payload",
        '{"seconds": 1}',
    ]
    shown = subprocess.run([*argv, "--wait"], stdout=subprocess.PIPE, stderr=replica, env=env, timeout=120, text=True)
    os.close(replica)
    bar = b""
    with contextlib.suppress(OSError):  # EIO once everything written has been read
        while chunk := os.read(primary, 65536):
            bar += chunk
    os.close(primary)
    assert (shown.returncode, json.loads(shown.stdout)["status"]) == (0, "succeeded")
    assert "\r[####################] 100.0% succeeded" in bar.decode()


def test_429_is_retried_as_retry_after_says(platform, token):
    process, port = start_web(_PlatformWithEnv(platform, API_THROTTLE_RATE="3/s"), "web-throttled")
    try:
        patient = jp.Client(f"http://127.0.0.1:{port}", token=token, max_retries=10)
        slept: list[float] = []
        patient._sleep = lambda seconds: (slept.append(seconds), time.sleep(seconds))
        for _ in range(12):
            assert list(patient.jobs()) == []
        assert slept, "the throttle never answered 429"
        assert all(1 <= s <= 30 for s in slept), slept  # Retry-After's whole seconds, bounded

        # A submission retried after a 429 sends the same Idempotency-Key each time: one job each.
        keys: list[str] = []
        patient._http.event_hooks["request"].append(lambda request: keys.append(request.headers["Idempotency-Key"]))
        slept.clear()
        submitted = [patient.submit("diagnostics.noop", {}).id for _ in range(8)]
        assert slept, "no submission was throttled"
        assert len(keys) == 8 + len(slept)
        assert len(set(keys)) == len(set(submitted)) == Job.objects.filter(owner__auth_token__key=token).count() == 8

        impatient = jp.Client(f"http://127.0.0.1:{port}", token=token, max_retries=0)

        def burst() -> None:
            for _ in range(12):
                list(impatient.jobs(page_size=1))

        with pytest.raises(jp.RateLimited) as limited:
            burst()
        assert (limited.value.status, limited.value.code) == (429, "throttled")
        assert limited.value.retry_after >= 1
    finally:
        process.stop()

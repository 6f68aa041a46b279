"""Cancel and long-poll against a real worker: a running job stops within seconds, a queued one
never starts, a finished one answers 409; `?wait=N` answers as soon as the job changes."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from rest_framework.authtoken.models import Token

from apps.jobs.models import Job, JobStatus
from tests.factories import UserFactory
from tests.processes import wait_for

pytestmark = pytest.mark.integration

TERMINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture
def client_session(transactional_db: Any) -> requests.Session:
    token = Token.objects.create(user=UserFactory(username="canceller"))
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token.key}"
    return session


def submit(session: requests.Session, base: str, kind: str, payload: dict[str, Any]) -> str:
    response = session.post(f"{base}/api/v1/jobs", json={"kind": kind, "payload": payload}, timeout=10)
    assert response.status_code == 202, response.text
    return response.headers["Location"]


def long_poll(session: requests.Session, url: str, *, etag: str | None = None, wait: float = 10) -> requests.Response:
    headers = {"If-None-Match": etag} if etag else {}
    return session.get(url, params={"wait": wait}, headers=headers, timeout=wait + 10)


def until(session: requests.Session, url: str, predicate: Any, timeout: float) -> dict[str, Any]:
    """Follow a job with long polls (no sleep loop) until `predicate(body)` holds."""
    deadline = time.monotonic() + timeout
    response = session.get(url, timeout=10)
    while True:
        body = response.json()
        if predicate(body):
            return body
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout} s; the job is {body['status']}")
        response = long_poll(session, url, etag=response.headers["ETag"], wait=min(10, remaining))
        if response.status_code == 304:
            response = session.get(url, timeout=10)


def test_cancelling_a_running_sleep_ends_it_cancelled_within_seconds(platform, live_server, client_session):
    platform.worker()
    url = submit(client_session, live_server.url, "diagnostics.sleep", {"seconds": 20})
    until(client_session, url, lambda body: body["status"] == "running", timeout=30)

    asked = time.monotonic()
    response = client_session.post(f"{url}/cancel", timeout=10)
    assert response.status_code == 202
    assert response.json()["status"] == "running"  # asked to stop; it stops at its next check
    done = until(client_session, url, lambda body: body["status"] in TERMINAL, timeout=15)

    assert done["status"] == "cancelled"
    assert time.monotonic() - asked < 5
    assert done["progress"]["percent"] < 100
    assert done["history"][-1]["outcome"] == "cancelled"
    assert client_session.post(f"{url}/cancel", timeout=10).status_code == 409


def test_a_cancelled_queued_job_never_starts(platform, live_server, client_session):
    # No worker yet: the job waits on the queue, is cancelled there, and a worker started
    # afterwards drops its message.
    url = submit(client_session, live_server.url, "diagnostics.sleep", {"seconds": 0.2})
    response = client_session.post(f"{url}/cancel", timeout=10)
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"

    worker = platform.worker()
    after = submit(client_session, live_server.url, "diagnostics.noop", {})
    assert until(client_session, after, lambda body: body["status"] in TERMINAL, timeout=30)["status"] == "succeeded"

    job_id = url.rsplit("/", 1)[1]
    wait_for(lambda: "nothing to claim" in worker.log(), timeout=10, what="the worker to drop the cancelled job")
    job = Job.objects.get(id=job_id)
    assert job.status == JobStatus.CANCELLED
    assert job.attempts == 0
    assert job.started_at is None


def test_cancelling_a_finished_job_answers_409(platform, live_server, client_session):
    platform.worker()
    url = submit(client_session, live_server.url, "diagnostics.noop", {})
    assert until(client_session, url, lambda body: body["status"] in TERMINAL, timeout=30)["status"] == "succeeded"

    response = client_session.post(f"{url}/cancel", timeout=10)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job_terminal"


def test_a_long_poll_returns_as_soon_as_the_job_finishes(platform, live_server, client_session):
    platform.worker()
    url = submit(client_session, live_server.url, "diagnostics.sleep", {"seconds": 1.5})
    running = until(client_session, url, lambda body: body["status"] == "running", timeout=30)
    current = client_session.get(url, timeout=10)
    assert current.headers["Retry-After"] == "1"

    started = time.monotonic()
    response = long_poll(client_session, url, etag=current.headers["ETag"], wait=10)
    # Progress moves the ETag without waking the poll: follow until the end.
    body = response.json() if response.status_code == 200 else running
    while body["status"] not in TERMINAL:
        response = long_poll(client_session, url, etag=response.headers["ETag"], wait=10)
        if response.status_code == 200:
            body = response.json()
    elapsed = time.monotonic() - started

    assert body["status"] == "succeeded"
    # Woken by the end, not by the 10 s wait running out.
    assert elapsed < 8, f"the long poll took {elapsed:.1f} s for a job of 1.5 s"
    assert "Retry-After" not in response.headers
    assert client_session.get(url, headers={"If-None-Match": response.headers["ETag"]}, timeout=10).status_code == 304

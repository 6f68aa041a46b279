"""Submit over HTTP, a real worker runs it, the client polls the result."""

from __future__ import annotations

import pytest
import requests
from rest_framework.authtoken.models import Token

from tests.factories import UserFactory
from tests.processes import wait_for

pytestmark = pytest.mark.integration


def poll_until_terminal(session: requests.Session, url: str, timeout: float = 30) -> dict:
    def finished():
        body = session.get(url, timeout=5).json()
        return body if body["status"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(finished, timeout=timeout, interval=0.1, what=f"{url} to finish")


@pytest.fixture
def client_session(transactional_db):
    user = UserFactory(username="e2e")
    token = Token.objects.create(user=user)
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token.key}"
    return session


def test_a_submitted_sleep_job_runs_on_a_real_worker_and_the_client_sees_it_succeed(
    platform, live_server, client_session
):
    platform.worker()

    response = client_session.post(
        f"{live_server.url}/api/v1/jobs", json={"kind": "diagnostics.sleep", "payload": {"seconds": 0.3}}, timeout=10
    )

    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "queued"
    assert response.headers["Location"].endswith(f"/api/v1/jobs/{job['id']}")
    done = poll_until_terminal(client_session, response.headers["Location"])
    assert done["status"] == "succeeded"
    assert done["attempts"] == 1
    assert done["result"] == {"slept": 0.3}
    assert done["progress"]["percent"] == 100.0
    assert done["started_at"]
    assert done["finished_at"]


def test_a_sleep_job_shows_its_progress_while_it_runs(platform, live_server, client_session):
    platform.worker()
    location = client_session.post(
        f"{live_server.url}/api/v1/jobs", json={"kind": "diagnostics.sleep", "payload": {"seconds": 3}}, timeout=10
    ).headers["Location"]

    def partway():
        body = client_session.get(location, timeout=5).json()
        percent = body["progress"]["percent"]
        return body if body["status"] == "running" and percent and 0 < percent < 100 else None

    running = wait_for(partway, timeout=20, what="progress between 0 and 100 %")
    assert "slept" in running["progress"]["message"]
    assert poll_until_terminal(client_session, location)["status"] == "succeeded"


def test_each_kind_runs_as_its_own_celery_task_name(platform, live_server, client_session):
    worker = platform.worker()
    for kind, payload in [("diagnostics.noop", {}), ("diagnostics.sleep", {"seconds": 0})]:
        location = client_session.post(
            f"{live_server.url}/api/v1/jobs", json={"kind": kind, "payload": payload}, timeout=10
        ).headers["Location"]
        assert poll_until_terminal(client_session, location)["status"] == "succeeded"
    log = worker.log()
    assert "Task diagnostics.noop[" in log
    assert "Task diagnostics.sleep[" in log

"""GET /api/v1/queues and pausing or resuming a queue or a kind over the API: staff only (403
for anyone else), 404 for an unknown name, idempotent, and the queue's new state answered."""

from __future__ import annotations

import pytest

from apps.jobs import pauses
from apps.jobs.models import Pause
from tests.factories import UserFactory
from tests.helpers.api import client_for


@pytest.fixture
def staff(db):
    return client_for(UserFactory(is_staff=True))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/queues"),
        ("post", "/api/v1/queues/default/pause"),
        ("post", "/api/v1/queues/default/resume"),
        ("post", "/api/v1/kinds/diagnostics.noop/pause"),
        ("post", "/api/v1/kinds/diagnostics.noop/resume"),
    ],
)
def test_only_staff_may_see_or_pause_queues_and_kinds(api, method, path):
    response = getattr(api, method)(path, {}, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert not Pause.objects.exists()


def test_pausing_a_queue_answers_its_new_state_and_the_list_shows_it(staff, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = staff.post("/api/v1/queues/default/pause", {}, format="json")
        again = staff.post("/api/v1/queues/default/pause", format="json")

    assert (first.status_code, again.status_code) == (200, 200)
    body = again.json()
    assert (body["name"], body["paused"], body["paused_by"]) == ("default", True, first.json()["paused_by"])
    assert isinstance(body["depth"], int)
    assert body["oldest_age_seconds"] >= 0

    listed = {q["name"]: q for q in staff.get("/api/v1/queues").json()}
    assert set(listed) == {"high", "default", "low", "io_high", "io_default", "io_low"}
    assert listed["default"]["paused"]
    assert not listed["high"]["paused"]

    with django_capture_on_commit_callbacks(execute=True):
        resumed = staff.post("/api/v1/queues/default/resume")
    assert resumed.status_code == 200
    assert resumed.json()["paused"] is False
    assert staff.post("/api/v1/queues/default/resume").json()["paused"] is False


def test_pausing_a_kind_answers_its_new_state(staff, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        paused = staff.post("/api/v1/kinds/diagnostics.sleep/pause")
        resumed = staff.post("/api/v1/kinds/diagnostics.sleep/resume")

    assert paused.status_code == 200
    assert (paused.json()["name"], paused.json()["paused"]) == ("diagnostics.sleep", True)
    assert resumed.json()["paused"] is False


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/queues/nope/pause",
        "/api/v1/queues/nope/resume",
        "/api/v1/kinds/nope/pause",
        "/api/v1/kinds/nope/resume",
    ],
)
def test_an_unknown_queue_or_kind_answers_404(staff, path):
    response = staff.post(path)

    assert response.status_code == 404
    assert response.json()["error"]["code"] in ("unknown_queue", "unknown_kind")


def test_metrics_show_each_queue_and_kind_paused_or_not(client, db, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        pauses.queue_pause(name="low")
        pauses.kind_pause(name="diagnostics.flaky")

    body = client.get("/metrics").content.decode()

    assert 'queue_paused{queue="low"} 1.0' in body
    assert 'queue_paused{queue="default"} 0.0' in body
    assert 'kind_paused{kind="diagnostics.flaky"} 1.0' in body
    assert 'kind_paused{kind="diagnostics.noop"} 0.0' in body


# --- the admin's dashboard -----------------------------------------------------------------

PAUSE_DEFAULT = "/admin/ops/dashboard/queue/default/pause/"


def test_the_dashboard_pauses_a_queue_after_a_confirmation(admin_client, django_capture_on_commit_callbacks):
    page = admin_client.get("/admin/ops/dashboard/").content.decode()
    assert f'href="{PAUSE_DEFAULT}"' in page
    assert 'href="/admin/ops/dashboard/kind/diagnostics.noop/pause/"' in page

    confirm = admin_client.get(PAUSE_DEFAULT)
    assert confirm.status_code == 200
    assert "Yes, pause the queue default" in confirm.content.decode()
    assert not Pause.objects.exists()  # nothing happens before the POST

    with django_capture_on_commit_callbacks(execute=True):
        done = admin_client.post(PAUSE_DEFAULT)
    assert done.status_code == 302
    assert Pause.objects.filter(target_type="queue", name="default", paused_by="admin").exists()
    page = admin_client.get("/admin/ops/dashboard/").content.decode()
    assert 'href="/admin/ops/dashboard/queue/default/resume/"' in page

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post("/admin/ops/dashboard/queue/default/resume/")
    assert not Pause.objects.exists()


def test_pausing_from_the_admin_needs_the_change_permission(client, db):
    client.force_login(UserFactory(username="bare-staff", is_staff=True))

    assert client.get(PAUSE_DEFAULT).status_code == 403
    assert client.post(PAUSE_DEFAULT).status_code == 403
    assert 'href="/admin/ops/dashboard/queue/' not in client.get("/admin/ops/dashboard/").content.decode()
    assert not Pause.objects.exists()


def test_the_admin_answers_404_for_an_unknown_queue_or_action(admin_client):
    assert admin_client.get("/admin/ops/dashboard/queue/nope/pause/").status_code == 404
    assert admin_client.get("/admin/ops/dashboard/queue/default/explode/").status_code == 404

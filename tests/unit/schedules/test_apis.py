"""The schedules API: 201 with the next run, the caller's own only, PATCH and DELETE."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.jobs.models import Job
from apps.jobs.serializers import JobOutput
from apps.schedules import firing
from apps.schedules.models import Schedule
from tests.factories import UserFactory
from tests.helpers.api import client_for
from tests.unit.schedules.helpers import make

pytestmark = pytest.mark.django_db


def test_a_schedule_is_made_with_201_its_id_and_its_next_run(api):
    answer = api.post(
        "/api/v1/schedules",
        {"kind": "diagnostics.noop", "payload": {}, "cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"},
        format="json",
    )
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["id"]
    assert body["next_run_at"]
    assert (body["cron"], body["every_seconds"], body["timezone"], body["enabled"]) == (
        "0 9 * * 1-5",
        None,
        "Europe/Berlin",
        True,
    )
    assert body["description"] == "At 09:00 on Monday through Friday (Europe/Berlin)"
    assert answer["Location"].endswith(f"/api/v1/schedules/{body['id']}")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"kind": "diagnostics.noop", "payload": {}, "cron": "99 * * * *"}, "invalid_cron"),
        (
            {"kind": "diagnostics.noop", "payload": {}, "cron": "0 9 * * *", "timezone": "Nowhere/Land"},
            "invalid_timezone",
        ),
        ({"kind": "diagnostics.noop", "payload": {}, "cron": "0 9 * * *", "every_seconds": 5}, "invalid_timing"),
        ({"kind": "diagnostics.noop", "payload": {}}, "invalid_timing"),
        ({"kind": "diagnostics.noop", "payload": {}, "every_seconds": 0}, "invalid_every_seconds"),
        ({"kind": "diagnostics.sleep", "payload": {"seconds": -1}, "every_seconds": 5}, "invalid_payload"),
        ({"kind": "webhooks.deliver", "payload": {}, "every_seconds": 5}, "unknown_kind"),
        ({"kind": "diagnostics.noop", "every_seconds": 5, "evry": 1}, "invalid_input"),
    ],
)
def test_a_bad_schedule_answers_400_with_a_stable_code(api, body, code):
    answer = api.post("/api/v1/schedules", body, format="json")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == code
    assert answer.json()["error"]["message"]
    assert not Schedule.objects.exists()


def test_the_list_holds_the_callers_schedules_only(api, user):
    mine = [make(user) for _ in range(3)]
    make(UserFactory())
    answer = api.get("/api/v1/schedules?page_size=2")
    assert answer.status_code == 200
    page = answer.json()
    assert len(page["results"]) == 2
    assert page["next"]
    rest = api.get(page["next"]).json()
    ids = {s["id"] for s in page["results"] + rest["results"]}
    assert ids == {str(s.id) for s in mine}


def test_another_clients_schedule_is_404(api):
    theirs = make(UserFactory())
    for method in ("get", "patch", "delete"):
        answer = getattr(api, method)(f"/api/v1/schedules/{theirs.id}", {"enabled": False}, format="json")
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "schedule_not_found"
    assert Schedule.objects.get(pk=theirs.pk).enabled


def test_patch_disables_and_enables(api, user):
    schedule = make(user)
    answer = api.patch(f"/api/v1/schedules/{schedule.id}", {"enabled": False}, format="json")
    assert answer.status_code == 200
    assert answer.json()["enabled"] is False
    assert firing.schedules_fire_due() == 0
    answer = api.patch(f"/api/v1/schedules/{schedule.id}", {"enabled": True, "every_seconds": 60}, format="json")
    assert answer.json()["enabled"] is True
    assert answer.json()["every_seconds"] == 60


def test_a_bad_patch_answers_400_and_changes_nothing(api, user):
    schedule = make(user)
    answer = api.patch(f"/api/v1/schedules/{schedule.id}", {"cron": "not a cron"}, format="json")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_cron"
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.every_seconds) == ("", 10)


def test_delete_answers_204(api, user):
    schedule = make(user)
    assert api.delete(f"/api/v1/schedules/{schedule.id}").status_code == 204
    assert api.get(f"/api/v1/schedules/{schedule.id}").status_code == 404


def test_a_job_a_schedule_made_names_it(api, user):
    schedule = make(user)
    firing.schedules_fire_due(now=schedule.next_run_at)
    job = Job.objects.get(schedule_id=schedule.pk)
    body = api.get(f"/api/v1/jobs/{job.id}").json()
    assert body["schedule"] == str(schedule.id)
    assert body["scheduled_for"].startswith("2026-06-01T12:00:10")
    listed = api.get("/api/v1/jobs").json()["results"][0]
    assert (listed["schedule"], listed["scheduled_for"]) == (body["schedule"], body["scheduled_for"])
    plain = api.post("/api/v1/jobs", {"kind": "diagnostics.noop", "payload": {}}, format="json").json()
    assert (plain["schedule"], plain["scheduled_for"]) == (None, None)


def test_no_token_is_401():
    assert APIClient().get("/api/v1/schedules").status_code == 401


def test_a_scheduled_jobs_fast_representation_equals_drfs(user):
    schedule = make(user)
    firing.schedules_fire_due(now=schedule.next_run_at)
    job = Job.objects.get(schedule_id=schedule.pk)
    serializer = JobOutput(job)
    assert serializer.to_representation(job) == serializer.drf_representation(job)


def test_jobs_list_filters_by_schedule(api, user):
    schedule, other = make(user), make(user)
    firing.schedules_fire_due(now=schedule.next_run_at)
    api.post("/api/v1/jobs", {"kind": "diagnostics.noop", "payload": {}}, format="json")
    made = Job.objects.get(schedule_id=schedule.pk)

    page = api.get(f"/api/v1/jobs?schedule={schedule.id}").json()
    assert [job["id"] for job in page["results"]] == [str(made.id)]
    assert page["results"][0]["schedule"] == str(schedule.id)
    theirs = api.get("/api/v1/jobs", {"schedule": other.id, "status": "queued"}).json()["results"]
    assert [job["schedule"] for job in theirs] == [str(other.id)]
    # Another client sees none of the schedule's jobs.
    stranger = client_for(UserFactory()).get(f"/api/v1/jobs?schedule={schedule.id}").json()
    assert stranger["results"] == []


def test_a_bad_schedule_id_in_the_jobs_list_answers_400_naming_it(api):
    response = api.get("/api/v1/jobs?schedule=not-a-uuid")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert list(error["details"]) == ["schedule"]


def test_the_schema_documents_the_jobs_list_schedule_filter(api):
    schema = api.get("/api/schema/?format=json").json()
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/jobs"]["get"]["parameters"]}
    assert parameters["schedule"]["schema"] == {"type": "string", "format": "uuid"}
    assert parameters["schedule"]["in"] == "query"

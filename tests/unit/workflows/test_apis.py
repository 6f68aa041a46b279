"""The workflows API as a client sees it: submit, read (ETag, 304, Retry-After), list,
cancel, another client's workflow, and the job's `workflow` field."""

from __future__ import annotations

import pytest

from apps.workflows.models import Workflow
from tests.factories import UserFactory
from tests.helpers.api import client_for
from tests.unit.workflows.helpers import node, succeed

WORKFLOWS = "/api/v1/workflows"

pytestmark = pytest.mark.django_db

DIAMOND = {
    "name": "diamond",
    "jobs": [node("a"), node("b", "a"), node("c", "a"), node("d", "b", "c")],
}


def submit(api, capture, body=DIAMOND):
    with capture(execute=True):
        return api.post(WORKFLOWS, body, format="json")


def test_a_workflow_answers_202_with_its_jobs_and_where_to_find_it(api, django_capture_on_commit_callbacks):
    response = submit(api, django_capture_on_commit_callbacks)
    assert response.status_code == 202, response.json()
    body = response.json()
    assert response["Location"] == f"http://testserver/api/v1/workflows/{body['id']}"
    assert body["name"] == "diamond"
    assert body["status"] == "running"
    assert body["finished_at"] is None
    assert body["counts"]["total"] == 4
    assert body["counts"]["queued"] == 1
    assert body["counts"]["waiting"] == 3
    jobs = {job["ref"]: job for job in body["jobs"]}
    assert jobs["d"]["depends_on"] == ["b", "c"]
    assert jobs["d"]["status"] == "waiting"
    assert body["links"]["cancel"].endswith(f"/workflows/{body['id']}/cancel")
    job = api.get(f"/api/v1/jobs/{jobs['d']['id']}").json()
    assert job["status"] == "waiting"
    assert job["workflow"] == {"id": body["id"], "ref": "d"}


def test_a_job_outside_a_workflow_says_so(api):
    body = api.post("/api/v1/jobs", {"kind": "diagnostics.noop"}, format="json").json()
    assert body["workflow"] is None


@pytest.mark.parametrize(
    ("jobs", "code"),
    [
        ([node("p", "q"), node("q", "p")], "workflow_cycle"),
        ([node("p", "nope")], "unknown_ref"),
        ([node("p"), node("p")], "duplicate_ref"),
        ([node("p", kind="nope")], "invalid_workflow"),
        ([{"ref": "p", "kind": "diagnostics.noop", "run_at": "2030-01-01T00:00:00Z"}], "invalid_workflow"),
        ([node(f"j{i}") for i in range(1001)], "workflow_too_large"),
    ],
)
def test_a_bad_workflow_answers_400_with_its_code_and_writes_nothing(api, jobs, code):
    response = api.post(WORKFLOWS, {"jobs": jobs}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code
    assert not Workflow.objects.exists()


def test_another_clients_workflow_answers_404(api, django_capture_on_commit_callbacks):
    workflow_id = submit(api, django_capture_on_commit_callbacks).json()["id"]
    other = client_for(UserFactory())
    assert other.get(f"{WORKFLOWS}/{workflow_id}").status_code == 404
    assert other.post(f"{WORKFLOWS}/{workflow_id}/cancel").status_code == 404
    assert other.get(WORKFLOWS).json()["results"] == []


def test_polling_with_the_current_etag_answers_304_and_a_change_moves_it(api, django_capture_on_commit_callbacks):
    workflow_id = submit(api, django_capture_on_commit_callbacks).json()["id"]
    first = api.get(f"{WORKFLOWS}/{workflow_id}")
    assert first.status_code == 200
    assert first["Retry-After"] == "1"
    unchanged = api.get(f"{WORKFLOWS}/{workflow_id}", HTTP_IF_NONE_MATCH=first["ETag"])
    assert unchanged.status_code == 304
    assert unchanged["ETag"] == first["ETag"]
    succeed(Workflow.objects.get(id=workflow_id), "a")
    changed = api.get(f"{WORKFLOWS}/{workflow_id}", HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200
    assert changed["ETag"] != first["ETag"]


def test_cancel_answers_202_then_409_once_finished(api, django_capture_on_commit_callbacks):
    workflow_id = submit(api, django_capture_on_commit_callbacks).json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"{WORKFLOWS}/{workflow_id}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert response.json()["counts"]["cancelled"] == 4
    again = api.post(f"{WORKFLOWS}/{workflow_id}/cancel")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "workflow_terminal"
    finished = api.get(f"{WORKFLOWS}/{workflow_id}")
    assert "Retry-After" not in finished
    assert "cancel" not in finished.json()["links"]


def test_the_list_is_the_callers_newest_first(api, django_capture_on_commit_callbacks):
    first = submit(api, django_capture_on_commit_callbacks).json()["id"]
    second = submit(api, django_capture_on_commit_callbacks).json()["id"]
    page = api.get(WORKFLOWS).json()
    assert [w["id"] for w in page["results"]] == [second, first]
    assert page["results"][0]["total"] == 4


def test_jobs_list_filters_by_the_waiting_status(api, django_capture_on_commit_callbacks):
    submit(api, django_capture_on_commit_callbacks)
    page = api.get("/api/v1/jobs?status=waiting").json()
    assert len(page["results"]) == 3


def test_jobs_list_filters_by_workflow(api, user, django_capture_on_commit_callbacks):
    workflow = submit(api, django_capture_on_commit_callbacks).json()
    other = submit(api, django_capture_on_commit_callbacks).json()
    api.post("/api/v1/jobs", {"kind": "diagnostics.noop"}, format="json")
    page = api.get(f"/api/v1/jobs?workflow={workflow['id']}").json()
    assert sorted(job["id"] for job in page["results"]) == sorted(job["id"] for job in workflow["jobs"])
    assert {job["workflow"]["id"] for job in page["results"]} == {workflow["id"]}
    waiting = api.get("/api/v1/jobs", {"workflow": other["id"], "status": "waiting"}).json()
    assert len(waiting["results"]) == 3
    # Another client's workflow lists nothing of it.
    stranger = client_for(UserFactory()).get(f"/api/v1/jobs?workflow={workflow['id']}").json()
    assert stranger["results"] == []


def test_a_bad_workflow_id_in_the_jobs_list_answers_400_naming_it(api):
    response = api.get("/api/v1/jobs?workflow=not-a-uuid")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert list(error["details"]) == ["workflow"]


def test_the_schema_documents_the_jobs_list_workflow_filter(api):
    schema = api.get("/api/schema/?format=json").json()
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/jobs"]["get"]["parameters"]}
    assert parameters["workflow"]["schema"] == {"type": "string", "format": "uuid"}
    assert parameters["workflow"]["in"] == "query"


def test_an_idempotency_key_is_refused_rather_than_ignored(api):
    response = api.post(WORKFLOWS, DIAMOND, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "idempotency_not_supported"
    assert not Workflow.objects.exists()

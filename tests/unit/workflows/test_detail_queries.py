"""GET /api/v1/workflows/{id} reads a constant number of queries, whatever the workflow's
size: the token, the workflow with its polling version, and its nodes joined with their jobs."""

from __future__ import annotations

import pytest

from apps.workflows.graph import WORKFLOW_MAX_JOBS
from tests.unit.workflows.helpers import node, start, succeed

pytestmark = pytest.mark.django_db

# The token's look-up, the workflow with its jobs' latest change and number, the jobs.
DETAIL_QUERIES = 3


def chord(user, members: int):
    refs = [f"m{i}" for i in range(members)]
    return start(user, *(node(ref) for ref in refs), node("last", *refs))


def test_a_thousand_job_workflow_answers_in_as_many_queries_as_a_small_one(api, user, django_assert_num_queries):
    small = chord(user, 2)
    big = chord(user, WORKFLOW_MAX_JOBS - 1)
    with django_assert_num_queries(DETAIL_QUERIES):
        response = api.get(f"/api/v1/workflows/{small.id}")
    assert response.status_code == 200
    with django_assert_num_queries(DETAIL_QUERIES):
        response = api.get(f"/api/v1/workflows/{big.id}")
    assert response.status_code == 200
    body = response.json()
    assert body["counts"]["total"] == WORKFLOW_MAX_JOBS
    assert body["counts"]["queued"] == WORKFLOW_MAX_JOBS - 1
    last = body["jobs"][-1]
    assert last["ref"] == "last"
    assert last["status"] == "waiting"
    assert last["depends_on"] == [f"m{i}" for i in range(WORKFLOW_MAX_JOBS - 1)]
    assert body["jobs"][0] == {
        "ref": "m0",
        "id": body["jobs"][0]["id"],
        "kind": "diagnostics.noop",
        "status": "queued",
        "depends_on": [],
    }


def test_the_detail_etag_is_the_one_a_conditional_get_compares(api, user):
    workflow = chord(user, 3)
    url = f"/api/v1/workflows/{workflow.id}"
    first = api.get(url)
    assert api.get(url, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304
    succeed(workflow, "m0")
    changed = api.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200
    assert changed["ETag"] != first["ETag"]
    assert {job["ref"]: job["status"] for job in changed.json()["jobs"]}["m0"] == "succeeded"

"""The admin shows a workflow read-only: its jobs, their states and its graph as SVG."""

from __future__ import annotations

import pytest

from tests.unit.workflows.helpers import jobs_of, node, start, succeed

pytestmark = pytest.mark.django_db


def test_a_workflow_page_lists_its_jobs_and_draws_its_graph(admin_client, user):
    workflow = start(user, node("fetch"), node("resize", "fetch"), node("notify", "resize"), name="thumbs")
    succeed(workflow, "fetch")
    assert "thumbs" in admin_client.get("/admin/workflows/workflow/").content.decode()
    page = admin_client.get(f"/admin/workflows/workflow/{workflow.id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<svg" in html
    assert "fetch · succeeded" in html
    assert "resize · queued" in html
    assert str(jobs_of(workflow)["notify"].id) in html


def test_the_jobs_list_filters_by_workflow(admin_client, user):
    workflow = start(user, node("a"), node("b", "a"))
    other = start(user, node("x"))
    page = admin_client.get(f"/admin/jobs/job/?workflow_id={workflow.id}")
    assert page.status_code == 200
    html = page.content.decode()
    ids = jobs_of(workflow)
    assert str(ids["a"].id)[:8] in html
    assert str(jobs_of(other)["x"].id)[:8] not in html


def test_the_jobs_list_shows_the_chosen_workflow_and_reads_no_list_of_workflows(
    admin_client, user, django_assert_max_num_queries
):
    workflow = start(user, node("a"), node("b", "a"))
    unfiltered = admin_client.get("/admin/jobs/job/").content.decode()
    assert "By workflow" not in unfiltered  # nothing to choose from: no scan for workflow ids
    with django_assert_max_num_queries(12):
        page = admin_client.get(f"/admin/jobs/job/?workflow_id={workflow.id}")
    html = page.content.decode()
    assert "By workflow" in html
    assert str(workflow.id)[:8] in html


def test_a_bad_workflow_id_in_the_jobs_list_is_refused_not_a_crash(admin_client):
    page = admin_client.get("/admin/jobs/job/?workflow_id=not-a-uuid")
    assert page.status_code == 302
    assert page["Location"].endswith("?e=1")

"""A job's log lines as its owner and staff see them (issue 20, item 3): GET
/api/v1/jobs/{id}/logs (owner only, paginated, by attempt), the admin's job page (newest
attempt first, escaped, capped with a link), and pruning, which takes the lines with the job."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.jobs import joblogs, lifecycle, retention
from apps.jobs.joblogs_admin import ADMIN_LOG_LINES
from apps.jobs.models import JobLogLine, JobStatus
from tests.factories import JobFactory, UserFactory


def add_lines(job, attempt: int, count: int, level: str = "INFO", text: str = "line") -> None:
    now = timezone.now()
    JobLogLine.objects.bulk_create(
        JobLogLine(
            job=job,
            attempt=attempt,
            seq=i,
            at=now,
            level=level,
            logger="tests.handler",
            message=f"{text} {attempt}.{i}",
        )
        for i in range(1, count + 1)
    )


def url(job) -> str:
    return f"/api/v1/jobs/{job.id}/logs"


# --- the API ---------------------------------------------------------------------------


def test_the_owner_reads_every_attempts_lines_oldest_first(api, user):
    job = JobFactory(owner=user, attempts=2)
    add_lines(job, 1, 2)
    add_lines(job, 2, 1, level="ERROR")

    response = api.get(url(job))

    assert response.status_code == 200
    body = response.json()
    assert body["next"] is None
    assert [(r["attempt"], r["seq"], r["level"], r["message"]) for r in body["results"]] == [
        (1, 1, "INFO", "line 1.1"),
        (1, 2, "INFO", "line 1.2"),
        (2, 1, "ERROR", "line 2.1"),
    ]
    assert set(body["results"][0]) == {"attempt", "seq", "at", "level", "logger", "message"}
    assert body["results"][0]["logger"] == "tests.handler"


def test_someone_elses_job_answers_404_job_not_found(api):
    job = JobFactory(owner=UserFactory())
    add_lines(job, 1, 1)

    response = api.get(url(job))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"


def test_a_job_that_does_not_exist_answers_404(api):
    response = api.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000/logs")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "job_not_found"


def test_it_needs_a_token(client, db):
    job = JobFactory()
    assert client.get(url(job)).status_code == 401


def test_the_attempt_filter_keeps_one_attempts_lines(api, user):
    job = JobFactory(owner=user, attempts=2)
    add_lines(job, 1, 3)
    add_lines(job, 2, 2)

    body = api.get(url(job), {"attempt": 2}).json()

    assert [(r["attempt"], r["seq"]) for r in body["results"]] == [(2, 1), (2, 2)]


@pytest.mark.parametrize("bad", ["0", "abc", "-1", "1.5"])
def test_a_bad_attempt_answers_400(api, user, bad):
    job = JobFactory(owner=user)

    response = api.get(url(job), {"attempt": bad})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_input"
    assert "attempt" in json.dumps(response.json()["error"])


def test_pages_follow_one_another_by_cursor(api, user):
    job = JobFactory(owner=user, attempts=2)
    add_lines(job, 1, 5)
    add_lines(job, 2, 3)

    seen = []
    page = api.get(url(job), {"page_size": 3}).json()
    while True:
        seen += [(r["attempt"], r["seq"]) for r in page["results"]]
        if not page["next"]:
            break
        page = api.get(page["next"]).json()

    assert seen == [(1, i) for i in range(1, 6)] + [(2, i) for i in range(1, 4)]


def test_a_page_size_out_of_range_answers_400(api, user):
    job = JobFactory(owner=user)

    response = api.get(url(job), {"page_size": 5000})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_page_size"


def test_the_openapi_schema_describes_the_logs_endpoint(db, client):
    schema = json.loads(client.get("/api/schema/", {"format": "json"}).content)

    operation = schema["paths"]["/api/v1/jobs/{job_id}/logs"]["get"]
    assert operation["operationId"] == "jobs_logs"
    assert {p["name"] for p in operation["parameters"]} >= {"job_id", "attempt", "cursor", "page_size"}
    assert {"200", "404"} <= set(operation["responses"])


# --- the admin -------------------------------------------------------------------------


def test_the_job_page_shows_its_lines_newest_attempt_first_and_escaped(admin_client):
    job = JobFactory(attempts=2)
    add_lines(job, 1, 1, text="first try")
    add_lines(job, 2, 1, text="<script>alert(1)</script>")

    response = admin_client.get(f"/admin/jobs/job/{job.id}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    assert page.index("Attempt 2") < page.index("Attempt 1")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 2.1" in page
    assert "<script>alert(1)</script>" not in page
    assert "first try 1.1" in page


def test_a_job_page_with_many_lines_shows_the_last_ones_and_links_to_all(admin_client, django_assert_max_num_queries):
    job = JobFactory(attempts=2)
    add_lines(job, 1, 1000)
    add_lines(job, 2, 1000)

    with django_assert_max_num_queries(25):
        response = admin_client.get(f"/admin/jobs/job/{job.id}/change/")

    page = response.content.decode()
    assert page.count("line 2.") == ADMIN_LOG_LINES
    assert "line 2.1000" in page
    assert "line 2.800<" not in page
    assert "line 1." not in page  # the newest attempt used the page's budget
    assert "all 1000 lines" in page
    link = f"/admin/jobs/joblogline/?job={job.id}&amp;attempt=1"
    assert link in page

    listing = admin_client.get(link.replace("&amp;", "&"))
    assert listing.status_code == 200
    assert "line 1.1<" in listing.content.decode()
    assert "line 2.1<" not in listing.content.decode()


def test_a_job_without_lines_shows_a_dash(admin_client):
    job = JobFactory()

    response = admin_client.get(f"/admin/jobs/job/{job.id}/change/")

    assert response.status_code == 200
    assert "What the handler logged" in response.content.decode()


# --- pruning ---------------------------------------------------------------------------


def test_pruning_a_job_removes_its_lines_and_keeps_the_others(db, settings):
    settings.JOB_RETENTION_DAYS = 7
    long_ago = timezone.now() - timedelta(days=40)
    old = JobFactory(status=JobStatus.SUCCEEDED, attempts=1, started_at=long_ago, finished_at=long_ago)
    recent = JobFactory(status=JobStatus.SUCCEEDED, attempts=1, started_at=timezone.now(), finished_at=timezone.now())
    add_lines(old, 1, 5)
    add_lines(recent, 1, 2)

    figures = retention.prune()

    assert figures["jobs"] == 1
    assert not JobLogLine.objects.filter(job_id=old.id).exists()
    assert JobLogLine.objects.filter(job_id=recent.id).count() == 2


def test_deleting_an_owner_deletes_their_jobs_lines(db):
    job = JobFactory()
    add_lines(job, 1, 3)

    job.owner.delete()

    assert not JobLogLine.objects.exists()


def test_a_page_of_lines_costs_three_queries_however_many_lines(api, user, django_assert_num_queries):
    job = JobFactory(owner=user, attempts=1)
    add_lines(job, 1, 1000)

    with django_assert_num_queries(3):  # the token, the job (owner only), the page
        response = api.get(url(job), {"page_size": 1000})

    assert len(response.json()["results"]) == 1000


def test_the_list_of_every_line_loads(admin_client):
    add_lines(JobFactory(), 1, 3)

    response = admin_client.get("/admin/jobs/joblogline/")

    assert response.status_code == 200
    assert "line 1.3" in response.content.decode()


# --- the write ---------------------------------------------------------------------------


def test_lines_written_twice_are_kept_once(transactional_db):
    """A write whose answer was lost is tried again with the next batch: no error, no copy."""
    job = lifecycle.job_submit(owner=UserFactory(), kind="diagnostics.noop", payload={})
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w")
    line = joblogs.LogLine(seq=1, at=timezone.now(), level="INFO", logger="x", message="once")
    write = {"job_id": claim.job_id, "attempt": claim.attempt, "lease_token": claim.lease_token}

    assert joblogs.job_log_lines_write(**write, lines=[line]) == 1
    again = joblogs.LogLine(seq=2, at=timezone.now(), level="INFO", logger="x", message="then")
    assert joblogs.job_log_lines_write(**write, lines=[line, again]) == 1

    assert list(JobLogLine.objects.order_by("seq").values_list("message", flat=True)) == ["once", "then"]

"""The Django admin as staff use it: find jobs, read them, see dead letters; styled with
DEBUG off."""

from __future__ import annotations

import html

import pytest
from django.templatetags.static import static
from django.utils import timezone

from apps.deadletters.models import DeadLetter
from apps.jobs.models import JobAttempt, JobStatus, JobStep
from tests.factories import JobFactory

JOBS = "/admin/jobs/job/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # admin_client makes a superuser with a password; the production hasher costs half a second.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def listed(response, *jobs) -> list[bool]:
    content = response.content.decode()
    return [str(job.id) in content for job in jobs]


def test_the_job_list_shows_jobs(admin_client):
    jobs = JobFactory.create_batch(3)

    response = admin_client.get(JOBS)

    assert response.status_code == 200
    assert listed(response, *jobs) == [True, True, True]


def test_the_job_list_filters_by_status(admin_client):
    failed = JobFactory(status=JobStatus.FAILED)
    queued = JobFactory(status=JobStatus.QUEUED)

    response = admin_client.get(JOBS, {"status__exact": "failed"})

    assert response.status_code == 200
    assert listed(response, failed, queued) == [True, False]


def test_the_job_list_filters_by_kind(admin_client):
    sleep = JobFactory(kind="diagnostics.sleep", payload={"seconds": 1})
    noop = JobFactory(kind="diagnostics.noop")

    response = admin_client.get(JOBS, {"kind": "diagnostics.sleep"})

    assert response.status_code == 200
    assert listed(response, sleep, noop) == [True, False]


def test_the_job_list_filters_by_priority(admin_client):
    high = JobFactory(priority="high", queue="high")
    low = JobFactory(priority="low", queue="low")

    response = admin_client.get(JOBS, {"priority__exact": "high"})

    assert response.status_code == 200
    assert listed(response, high, low) == [True, False]


def test_searching_a_full_job_id_finds_that_job(admin_client):
    wanted, other = JobFactory(), JobFactory()

    response = admin_client.get(JOBS, {"q": str(wanted.id)})

    assert response.status_code == 200
    assert listed(response, wanted, other) == [True, False]


def test_searching_a_kind_finds_its_jobs(admin_client):
    sleep = JobFactory(kind="diagnostics.sleep", payload={"seconds": 1})
    noop = JobFactory(kind="diagnostics.noop")

    response = admin_client.get(JOBS, {"q": "diagnostics.sleep"})

    assert listed(response, sleep, noop) == [True, False]


@pytest.mark.parametrize("term", ["not-a-uuid", "1234", "'; drop table jobs_job; --", str(JobStatus.FAILED)])
def test_searching_text_that_is_not_a_job_id_does_not_fail(admin_client, term):
    job = JobFactory()

    response = admin_client.get(JOBS, {"q": term})

    assert response.status_code == 200
    assert listed(response, job) == [False]


def test_a_jobs_page_shows_its_payload_result_error_traceback_and_attempts(admin_client):
    now = timezone.now()
    job = JobFactory(
        kind="diagnostics.flaky",
        payload={"fail_times": 2, "permanent": False},
        status=JobStatus.FAILED,
        attempts=2,
        result={"partial": ["a", "b"]},
        error_type="RetryableError",
        error_message="failing on purpose <b>really</b>",
        error_traceback='Traceback (most recent call last):\n  File "x.py", line 1\nRetryableError: boom',
    )
    JobAttempt.objects.create(
        job=job,
        number=1,
        worker="celery@host-one",
        started_at=now,
        finished_at=now,
        outcome=JobAttempt.Outcome.FAILED,
        error_type="RetryableError",
        error_message="first",
    )
    JobAttempt.objects.create(
        job=job,
        number=2,
        worker="celery@host-two",
        started_at=now,
        finished_at=now,
        outcome=JobAttempt.Outcome.FAILED,
        error_type="RetryableError",
        error_message="second",
    )

    response = admin_client.get(f"{JOBS}{job.id}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    assert html.escape('{\n  "fail_times": 2,\n  "permanent": false\n}') in page
    assert html.escape('{\n  "partial": [\n    "a",\n    "b"\n  ]\n}') in page
    assert html.escape("failing on purpose <b>really</b>") in page  # escaped, never rendered as HTML
    assert html.escape('File "x.py", line 1\nRetryableError: boom') in page
    assert page.count('<pre style="white-space: pre-wrap; margin: 0">') == 3
    assert "celery@host-one" in page
    assert "celery@host-two" in page
    assert page.index("celery@host-one") < page.index("celery@host-two")
    assert 'name="attempt_history-TOTAL_FORMS" value="2"' in page


def test_jobs_cannot_be_added_in_the_admin(admin_client):
    JobFactory()

    add = admin_client.get(f"{JOBS}add/")
    changelist = admin_client.get(JOBS)

    assert add.status_code == 403
    assert f'href="{JOBS}add/"' not in changelist.content.decode()


def test_the_dead_letter_list_and_page_load(admin_client):
    job = JobFactory(status=JobStatus.FAILED, kind="diagnostics.flaky", payload={"fail_times": 9})
    letter = DeadLetter.objects.create(
        job=job,
        kind=job.kind,
        payload=job.payload,
        error_type="RetryableError",
        error_message="gave up",
        traceback="Traceback: ...",
        attempts=3,
        errors=[
            {
                "attempt": 1,
                "worker": "w",
                "outcome": "failed",
                "error_type": "RetryableError",
                "error_message": "first",
                "at": timezone.now().isoformat(),
            }
        ],
    )

    listing = admin_client.get("/admin/deadletters/deadletter/")
    page = admin_client.get(f"/admin/deadletters/deadletter/{letter.pk}/change/")

    assert listing.status_code == 200
    assert f"/admin/deadletters/deadletter/{letter.pk}/change/" in listing.content.decode()
    assert page.status_code == 200
    assert html.escape('"error_message": "first"') in page.content.decode()
    assert html.escape('"fail_times": 9') in page.content.decode()


def test_the_dead_letter_list_filters_by_state(admin_client):
    open_letter = DeadLetter.objects.create(job=JobFactory(status=JobStatus.FAILED), kind="diagnostics.noop")
    discarded = DeadLetter.objects.create(
        job=JobFactory(status=JobStatus.FAILED), kind="diagnostics.noop", state=DeadLetter.State.DISCARDED
    )

    content = admin_client.get("/admin/deadletters/deadletter/", {"state__exact": "open"}).content.decode()

    assert f"/admin/deadletters/deadletter/{open_letter.pk}/change/" in content
    assert f"/admin/deadletters/deadletter/{discarded.pk}/change/" not in content


def test_the_job_step_list_loads(admin_client):
    step = JobStep.objects.create(job=JobFactory(), name="charge-card", result={"id": 1}, attempt=1)

    response = admin_client.get("/admin/jobs/jobstep/")

    assert response.status_code == 200
    assert f"/admin/jobs/jobstep/{step.pk}/change/" in response.content.decode()


def test_the_admin_needs_a_staff_login(client, db):
    response = client.get(JOBS)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_the_admin_is_styled_with_debug_off(admin_client, settings):
    assert settings.DEBUG is False
    stylesheet = static("admin/css/base.css")
    assert stylesheet == "/static/admin/css/base.css"

    page = admin_client.get("/admin/")
    css = admin_client.get(stylesheet)

    assert stylesheet in page.content.decode()
    assert css.status_code == 200
    assert css["Content-Type"].startswith("text/css")
    assert b"".join(css.streaming_content if css.streaming else [css.content])

"""The job page's Retry and Cancel buttons: a confirmation page, then a POST that acts through
the same service as the list action; shown only when they apply, and only to staff who may
change jobs. A staff user with view permission alone sees no action and changes nothing."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from apps.deadletters.models import DeadLetter
from apps.jobs.models import Job, JobStatus
from tests.factories import UserFactory
from tests.helpers.jobs import claim, failed_for_good, submitted

JOBS = "/admin/jobs/job/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def owner(db):
    return UserFactory(username="buttons-client")


@pytest.fixture
def viewer_client(client, db):
    """A staff user who may view jobs and dead letters, and change nothing."""
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename__in=["view_job", "view_deadletter"]))
    client.force_login(viewer)
    return client


def page(client, job: Job) -> str:
    response = client.get(f"{JOBS}{job.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def test_a_failed_jobs_page_offers_retry_and_not_cancel(admin_client, owner):
    job = failed_for_good(owner)

    content = page(admin_client, job)

    assert f'href="{JOBS}{job.pk}/retry/"' in content
    assert f"{JOBS}{job.pk}/cancel/" not in content


def test_a_queued_jobs_page_offers_cancel_and_not_retry(admin_client, owner):
    job = submitted(owner)

    content = page(admin_client, job)

    assert f'href="{JOBS}{job.pk}/cancel/"' in content
    assert f"{JOBS}{job.pk}/retry/" not in content


def test_a_jobs_page_is_read_only_without_save_or_delete(admin_client, owner):
    job = submitted(owner)

    content = page(admin_client, job)
    post = admin_client.post(f"{JOBS}{job.pk}/change/", {"priority": "high"})

    assert 'name="_save"' not in content
    assert 'name="_continue"' not in content
    assert f"{JOBS}{job.pk}/delete/" not in content
    assert post.status_code == 403


def test_retry_asks_first_and_changes_nothing_on_the_question(admin_client, owner):
    job = failed_for_good(owner)

    response = admin_client.get(f"{JOBS}{job.pk}/retry/")

    assert response.status_code == 200
    content = response.content.decode()
    assert "csrfmiddlewaretoken" in content
    assert 'method="post"' in content
    assert str(job.pk) in content
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_confirming_retry_queues_the_job_again_and_says_so(admin_client, owner):
    job = failed_for_good(owner)

    response = admin_client.post(f"{JOBS}{job.pk}/retry/", follow=True)

    assert response.redirect_chain[-1][0] == f"{JOBS}{job.pk}/change/"
    assert f"Job {job.pk} is queued again" in response.content.decode()
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED
    # The same path as the list action: the failed job's open letter is closed as redriven.
    assert DeadLetter.objects.get(job=job).state == DeadLetter.State.REDRIVEN


def test_confirming_cancel_cancels_a_queued_job(admin_client, owner):
    job = submitted(owner)

    response = admin_client.post(f"{JOBS}{job.pk}/cancel/", follow=True)

    assert f"Job {job.pk} is cancelled." in response.content.decode()
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED


def test_cancelling_a_running_job_asks_it_to_stop(admin_client, owner):
    job = submitted(owner)
    claim(job)

    response = admin_client.post(f"{JOBS}{job.pk}/cancel/", follow=True)

    assert "was asked to stop" in response.content.decode()
    job.refresh_from_db()
    assert (job.status, job.cancel_requested_at is not None) == (JobStatus.RUNNING, True)


def test_a_button_that_no_longer_applies_changes_nothing_and_says_why(admin_client, owner):
    job = submitted(owner)

    response = admin_client.post(f"{JOBS}{job.pk}/retry/", follow=True)

    assert "Only a failed or cancelled job can be retried" in response.content.decode()
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED


def test_a_viewer_sees_the_job_but_no_button_and_no_action(viewer_client, owner):
    job = failed_for_good(owner)

    content = page(viewer_client, job)
    listing = viewer_client.get(JOBS).content.decode()

    assert f"{JOBS}{job.pk}/retry/" not in content
    assert 'value="retry"' not in listing
    assert 'value="cancel"' not in listing


@pytest.mark.parametrize("button", ["retry", "cancel"])
def test_a_viewer_gets_403_from_a_button_and_nothing_changes(viewer_client, owner, button):
    failed = failed_for_good(owner)
    queued = submitted(owner)
    job = failed if button == "retry" else queued

    asked = viewer_client.get(f"{JOBS}{job.pk}/{button}/")
    posted = viewer_client.post(f"{JOBS}{job.pk}/{button}/")

    assert (asked.status_code, posted.status_code) == (403, 403)
    assert Job.objects.get(pk=failed.pk).status == JobStatus.FAILED
    assert Job.objects.get(pk=queued.pk).status == JobStatus.QUEUED


def test_a_viewers_list_action_post_is_refused(viewer_client, owner):
    job = failed_for_good(owner)

    viewer_client.post(JOBS, {"action": "retry", "_selected_action": [str(job.pk)], "index": 0})

    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_the_job_list_shows_a_short_id_and_compact_dates(admin_client, owner):
    job = submitted(owner)

    content = admin_client.get(JOBS).content.decode()

    assert f'title="{job.pk}"' in content
    assert f">{str(job.pk)[:8]}</span>" in content
    assert f">{timezone.localtime(job.created_at).strftime('%m-%d %H:%M:%S')}</time>" in content

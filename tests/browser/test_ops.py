"""What an operator does in a browser: find a failed job in the admin, redrive its dead
letter, then look at Flower."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from apps.deadletters.models import DeadLetter
from apps.jobs import lifecycle
from apps.jobs.models import Job, JobStatus
from tests.factories import UserFactory

pytestmark = pytest.mark.browser

ADMIN_PASSWORD = "ops-correct-horse-battery"


@pytest.fixture
def failed_job(transactional_db) -> Job:
    """A job failed for good through the real services, so it has its dead letter."""
    job = lifecycle.job_submit(owner=UserFactory(), kind="diagnostics.flaky", payload={"fail_times": 1})
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w")
    assert claim is not None
    outcome = lifecycle.job_fail_attempt(
        claim=claim, failure=lifecycle.AttemptFailure("Boom", "it broke", "tb", permanent=True)
    )
    assert outcome == JobStatus.FAILED
    return job


def test_an_admin_redrives_a_failed_job_from_its_dead_letter_then_opens_flower(
    live_server, browser, screenshot, failed_job, flower
):
    get_user_model().objects.create_superuser("admin", "admin@example.com", ADMIN_PASSWORD)
    letter = DeadLetter.objects.get(job=failed_job, state=DeadLetter.State.OPEN)

    browser.get(f"{live_server.url}/admin/")
    browser.find_element(By.ID, "id_username").send_keys("admin")
    browser.find_element(By.ID, "id_password").send_keys(ADMIN_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "user-tools"), message="the admin login failed")

    # Find it: failed jobs, then the job's own page with its error.
    browser.get(f"{live_server.url}/admin/jobs/job/?status__exact=failed")
    browser.find_element(By.CSS_SELECTOR, f'a[href*="/{failed_job.id}/change/"]').click()  # its short id
    assert "Boom" in browser.find_element(By.ID, "content").text
    assert "it broke" in browser.find_element(By.ID, "content").text
    screenshot("1-failed-job")

    browser.get(f"{live_server.url}/admin/deadletters/deadletter/")
    browser.find_element(By.CSS_SELECTOR, f'input.action-select[value="{letter.pk}"]').click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("redrive")
    screenshot("2-dead-letters")
    browser.find_element(By.CSS_SELECTOR, "#changelist-form button[name=index]").click()

    message = WebDriverWait(browser, 10).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "ul.messagelist li.success"), message="no success message"
    )[0]
    assert message.text.startswith("1 redriven"), message.text
    screenshot("3-redriven")
    failed_job.refresh_from_db()
    letter.refresh_from_db()
    assert failed_job.status == JobStatus.QUEUED
    assert letter.state == DeadLetter.State.REDRIVEN
    assert letter.resolved_by == "admin"

    browser.get(flower.url("/workers"))
    WebDriverWait(browser, 15).until(
        lambda d: d.find_elements(By.ID, "workers-table"), message="Flower's workers dashboard did not render"
    )
    assert "Flower" in browser.title
    screenshot("4-flower")

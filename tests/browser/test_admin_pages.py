"""The admin at 1,366 px, as staff see it: the operations dashboard and the job and dead-letter
lists fit without a horizontal scroll, and a failed job is retried from its own page through
the Retry button and its confirmation."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from apps.deadletters.models import DeadLetter
from apps.jobs.models import Job, JobStatus
from tests.factories import UserFactory
from tests.helpers.jobs import claim, failed_for_good, submitted

pytestmark = pytest.mark.browser

ADMIN_PASSWORD = "ops-correct-horse-battery"
WIDTH, HEIGHT = 1366, 768


@pytest.fixture
def jobs(transactional_db) -> list[Job]:
    """A page's worth of jobs in every state, from owners with long names, some failed for
    good with their dead letters."""
    owners = [UserFactory(username=f"a-client-with-a-rather-long-username-{n}") for n in range(3)]
    made = [failed_for_good(owners[n % 3], "diagnostics.flaky", {"fail_times": 1}) for n in range(6)]
    made += [submitted(owners[n % 3], "diagnostics.sleep", {"seconds": 1}) for n in range(12)]
    for job in made[-4:]:
        claim(job, worker="celery@a-worker-host-with-a-long-name")
    return made


def log_in(browser: WebDriver, base: str) -> None:
    get_user_model().objects.create_superuser("admin", "admin@example.com", ADMIN_PASSWORD)
    browser.get(f"{base}/admin/")
    browser.find_element(By.ID, "id_username").send_keys("admin")
    browser.find_element(By.ID, "id_password").send_keys(ADMIN_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "user-tools"), message="the admin login failed")


def at_laptop_width(browser: WebDriver) -> None:
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )


def assert_no_horizontal_scroll(browser: WebDriver, page: str) -> None:
    scroll, client = browser.execute_script(
        "const e = document.documentElement; return [e.scrollWidth, e.clientWidth];"
    )
    assert client == WIDTH or client == WIDTH - 15, f"{page}: the viewport is {client} px wide, not {WIDTH}"
    assert scroll <= client, f"{page} scrolls sideways at {WIDTH} px: {scroll} px of content in {client} px"
    # The admin's list scrolls inside its own box (overflow-x: auto) rather than the page's.
    for box, inner, outer in browser.execute_script(
        "return Array.from(document.querySelectorAll('#changelist .results, #content-main'))"
        ".map(e => [e.className || e.id, e.scrollWidth, e.clientWidth]);"
    ):
        assert inner <= outer, f"{page}: {box} scrolls sideways at {WIDTH} px ({inner} px in {outer} px)"


def test_the_dashboard_and_the_lists_fit_1366_px_and_a_job_is_retried_from_its_page(
    live_server, browser, screenshot, jobs
):
    log_in(browser, live_server.url)
    at_laptop_width(browser)

    browser.get(f"{live_server.url}/admin/")
    browser.find_element(By.LINK_TEXT, "Operations dashboard").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#attempts svg"))
    assert "Operations dashboard" in browser.title
    assert len(browser.find_elements(By.CSS_SELECTOR, "#attempts svg rect")) == 180
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#queues tbody th")] == [
        "high",
        "default",
        "low",
        "io_high",
        "io_default",
        "io_low",
    ]
    assert_no_horizontal_scroll(browser, "the dashboard")
    screenshot("1-dashboard")

    browser.get(f"{live_server.url}/admin/jobs/job/")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")) == len(jobs)
    assert_no_horizontal_scroll(browser, "the job list")
    screenshot("2-job-list")

    browser.get(f"{live_server.url}/admin/deadletters/deadletter/")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")) == 6
    assert_no_horizontal_scroll(browser, "the dead-letter list")
    screenshot("3-dead-letter-list")

    failed = jobs[0]
    browser.get(f"{live_server.url}/admin/jobs/job/?status__exact=failed")
    link = browser.find_element(By.CSS_SELECTOR, f'a[href*="/{failed.pk}/change/"]')
    assert link.text == str(failed.pk)[:8]
    link.click()
    assert not browser.find_elements(By.ID, "action-cancel")  # a failed job cannot be cancelled
    browser.find_element(By.ID, "action-retry").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "confirm-retry"))
    assert Job.objects.get(pk=failed.pk).status == JobStatus.FAILED  # the question changes nothing
    screenshot("4-retry-confirmation")
    browser.find_element(By.ID, "confirm-retry").click()

    message = WebDriverWait(browser, 10).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "ul.messagelist li.success"), message="no success message"
    )[0]
    assert f"Job {failed.pk} is queued again" in message.text
    screenshot("5-retried")
    assert Job.objects.get(pk=failed.pk).status == JobStatus.QUEUED
    assert DeadLetter.objects.get(job=failed).state == DeadLetter.State.REDRIVEN
    assert not browser.find_elements(By.ID, "action-retry")  # queued now: only Cancel applies
    assert browser.find_elements(By.ID, "action-cancel")

"""The client page's dashboard features, in headless Chromium against the live server and,
where a job must run, a real Celery worker: uploads from the file picker, result files as
links with image previews, retry of a failed job, a still bar on a finished job, list
filters, and the workflows and schedules views."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from apps.files.models import Upload
from apps.jobs.models import Job, JobStatus
from apps.schedules.models import Schedule
from tests.browser.test_web_page import labelled, open_signed_in, progress_value
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.browser

# A list the page draws again (a refresh, an action's answer) leaves found rows stale: a wait
# looks again rather than fail.
RERENDERED = (StaleElementReferenceException,)


def indeterminate(browser: WebDriver) -> bool:
    """Whether the job's progress bar is the animated "busy" one."""
    return browser.execute_script("return document.getElementById('job-progress').matches(':indeterminate')")


def job_rows(browser: WebDriver) -> list[WebElement]:
    return browser.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr")


def test_an_image_from_the_file_picker_is_uploaded_thumbnailed_and_its_files_are_links_with_previews(
    platform, live_server, browser, screenshot, client_user, tmp_path: Path
):
    platform.worker()
    photo = tmp_path / "photo.png"
    Image.new("RGB", (300, 200), (200, 40, 40)).save(photo)
    open_signed_in(browser, live_server, "alice")
    Select(browser.find_element(By.ID, "kind")).select_by_value("images.thumbnail")

    labelled(browser, "A file to upload (upload_id)").send_keys(str(photo))
    state = browser.find_element(By.CSS_SELECTOR, ".upload-state")
    WebDriverWait(browser, 15, ignored_exceptions=RERENDERED).until(
        lambda d: "Uploaded photo.png" in state.text, message="the upload never finished"
    )
    labelled(browser, "sizes").send_keys("64, 32")
    screenshot("1-uploaded")
    browser.find_element(By.ID, "submit-button").click()

    status = browser.find_element(By.ID, "job-status")
    WebDriverWait(browser, 45, ignored_exceptions=RERENDERED).until(
        lambda d: status.text == "succeeded", message="the thumbnail job never succeeded"
    )
    job = Job.objects.get(id=browser.find_element(By.ID, "job-id").text)
    upload = Upload.objects.get(owner=client_user)
    assert job.payload == {"upload_id": str(upload.id), "sizes": [64, 32]}  # the id, no base64
    links = browser.find_elements(By.CSS_SELECTOR, "#job-files li > a:not(.preview)")
    assert [(a.text, a.get_attribute("href")) for a in links] == [
        (name, f"{live_server.url}/api/v1/jobs/{job.id}/files/{name}")
        for name in ("thumbnail-32.png", "thumbnail-64.png")
    ]
    # The previews are the files themselves, fetched with the page's credentials.
    WebDriverWait(browser, 15, ignored_exceptions=RERENDERED).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#job-files img")) == 2, message="no image previews"
    )
    widths = browser.execute_script(
        "return [...document.querySelectorAll('#job-files img')].map(i => [i.alt, i.naturalWidth, i.naturalHeight])"
    )
    assert sorted(widths) == [["Preview of thumbnail-32.png", 32, 21], ["Preview of thumbnail-64.png", 64, 43]]
    browser.execute_script("document.getElementById('job-files').scrollIntoView()")
    screenshot("2-files")
    # A link downloads the file itself (the same bytes the API serves).
    fetched = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => r.arrayBuffer().then(b => done([r.status, b.byteLength])));",
        links[0].get_attribute("href"),
    )
    assert fetched == [200, job.result["thumbnails"][1]["bytes"]]


def test_a_failed_job_has_a_still_bar_and_a_retry_button_that_runs_it_again(
    platform, live_server, browser, screenshot, client_user
):
    platform.worker()
    open_signed_in(browser, live_server, "alice")
    Select(browser.find_element(By.ID, "kind")).select_by_value("diagnostics.flaky")
    labelled(browser, "fail_times").send_keys("1")
    labelled(browser, "permanent").click()  # fails at once, no retries of its own
    browser.find_element(By.ID, "submit-button").click()

    status = browser.find_element(By.ID, "job-status")
    WebDriverWait(browser, 30, ignored_exceptions=RERENDERED).until(
        lambda d: status.text == "failed", message="the job never failed"
    )
    retry = browser.find_element(By.ID, "retry-button")
    assert retry.is_displayed()
    assert not browser.find_element(By.ID, "cancel-button").is_displayed()
    assert not indeterminate(browser)  # no busy bar on a finished job
    assert progress_value(browser) == 0
    assert "failing on purpose" in browser.find_element(By.ID, "job-error").text
    screenshot("1-failed")

    retry.click()
    WebDriverWait(browser, 30, ignored_exceptions=RERENDERED).until(
        lambda d: status.text == "succeeded", message="the retried job never succeeded"
    )
    assert not retry.is_displayed()
    assert browser.find_element(By.ID, "job-attempts").text == "2 of 6"
    assert '"succeeded_on_attempt": 2' in browser.find_element(By.ID, "job-result").text
    screenshot("2-retried")
    job = Job.objects.get(id=browser.find_element(By.ID, "job-id").text)
    assert (job.status, job.attempts) == (JobStatus.SUCCEEDED, 2)


def test_without_server_sent_events_the_page_follows_a_job_by_long_polling(
    platform, live_server, browser, screenshot, client_user
):
    platform.worker()
    # A browser (or a proxy in between) without EventSource: the page must still follow jobs.
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.EventSource;"})
    open_signed_in(browser, live_server, "alice")
    Select(browser.find_element(By.ID, "kind")).select_by_value("diagnostics.sleep")
    labelled(browser, "seconds").send_keys("2")
    browser.find_element(By.ID, "submit-button").click()

    status = browser.find_element(By.ID, "job-status")
    WebDriverWait(browser, 30, ignored_exceptions=RERENDERED).until(
        lambda d: status.text == "succeeded", message="the job was never seen to end"
    )
    assert browser.find_element(By.ID, "current-job").get_dom_attribute("data-live") == "poll"
    assert progress_value(browser) == 100


@pytest.mark.parametrize(
    ("state", "busy"),
    [("queued", True), ("running", True), ("succeeded", False), ("failed", False), ("cancelled", False)],
)
def test_the_bar_is_busy_only_while_the_job_may_still_move(live_server, browser, client_user, state, busy):
    job = JobFactory(owner=client_user, status=state)
    open_signed_in(browser, live_server, "alice")
    watch = f'#jobs-table tr[data-job-id="{job.id}"] button.watch'
    WebDriverWait(browser, 15, ignored_exceptions=RERENDERED).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, watch), message="the job is not listed"
    )
    browser.find_element(By.CSS_SELECTOR, watch).click()
    status = browser.find_element(By.ID, "job-status")
    WebDriverWait(browser, 15, ignored_exceptions=RERENDERED).until(
        lambda d: status.text == state, message="the job was never shown"
    )
    assert indeterminate(browser) is busy
    assert browser.find_element(By.ID, "retry-button").is_displayed() is (state == "failed")


def test_the_list_filters_by_status_and_kind(live_server, browser, screenshot, client_user):
    failed_sleep = JobFactory(owner=client_user, kind="diagnostics.sleep", status=JobStatus.FAILED)
    failed_noop = JobFactory(owner=client_user, kind="diagnostics.noop", status=JobStatus.FAILED)
    done_sleep = JobFactory(owner=client_user, kind="diagnostics.sleep", status=JobStatus.SUCCEEDED)
    JobFactory(owner=UserFactory(username="mallory"), kind="diagnostics.sleep", status=JobStatus.FAILED)
    open_signed_in(browser, live_server, "alice")

    def shown() -> set[str]:
        # One script reads every row: the list is drawn again when a filter changes.
        script = "return [...document.querySelectorAll('#jobs-table tbody tr')].map(r => r.dataset.jobId)"
        return set(browser.execute_script(script))

    WebDriverWait(browser, 15, ignored_exceptions=RERENDERED).until(
        lambda d: len(job_rows(d)) == 3, message="the list never showed 3 jobs"
    )
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("failed")
    WebDriverWait(browser, 15, ignored_exceptions=RERENDERED).until(
        lambda d: shown() == {str(failed_sleep.id), str(failed_noop.id)}, message="the status filter did not apply"
    )
    kind = Select(browser.find_element(By.ID, "filter-kind"))
    assert "diagnostics.sleep" in [o.get_attribute("value") for o in kind.options]
    kind.select_by_value("diagnostics.sleep")
    WebDriverWait(browser, 15, ignored_exceptions=RERENDERED).until(
        lambda d: shown() == {str(failed_sleep.id)}, message="the kind filter failed"
    )
    screenshot("filtered")
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("")
    WebDriverWait(browser, 15, ignored_exceptions=RERENDERED).until(
        lambda d: shown() == {str(failed_sleep.id), str(done_sleep.id)}, message="clearing the status filter"
    )
    Select(browser.find_element(By.ID, "filter-status")).select_by_value("running")
    empty = browser.find_element(By.ID, "jobs-empty")
    WebDriverWait(browser, 15, ignored_exceptions=RERENDERED).until(
        lambda d: empty.is_displayed(), message="no 'nothing matches' note"
    )
    assert empty.text == "No jobs match these filters."


def test_the_workflows_and_schedules_views_list_them_and_act_on_them(live_server, browser, screenshot, client_user):
    from apps.schedules import services as schedule_services
    from apps.workflows import services as workflow_services

    workflow_services.workflow_submit(
        owner=client_user,
        name="thumbs",
        jobs=[
            {"ref": "fetch", "kind": "diagnostics.noop", "payload": {}},
            {"ref": "resize", "kind": "diagnostics.noop", "payload": {}, "depends_on": ["fetch"]},
        ],
    )
    schedule = schedule_services.schedule_create(
        owner=client_user, kind="diagnostics.noop", payload={}, cron="0 9 * * 1-5", timezone_name="Europe/Berlin"
    )
    open_signed_in(browser, live_server, "alice")

    row = "#workflows-table tr[data-workflow-id] td"
    WebDriverWait(browser, 15, ignored_exceptions=RERENDERED).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, row), message="no workflow listed"
    )
    workflow_row = browser.find_element(By.CSS_SELECTOR, "#workflows-table tr[data-workflow-id]")
    assert "thumbs" in workflow_row.text
    assert "running" in workflow_row.text
    workflow_row.find_element(By.CSS_SELECTOR, "button.show-jobs").click()
    nested = "#workflows-table table.nested tbody tr"
    WebDriverWait(browser, 15, ignored_exceptions=RERENDERED).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, nested)) == 2, message="no jobs"
    )
    refs = [r.text for r in browser.find_elements(By.CSS_SELECTOR, f"{nested} td:first-child")]
    assert refs == ["fetch", "resize"]
    assert "after fetch" in browser.find_elements(By.CSS_SELECTOR, nested)[1].text

    schedule_row = browser.find_element(By.CSS_SELECTOR, f'#schedules-table tr[data-schedule-id="{schedule.id}"]')
    assert "diagnostics.noop" in schedule_row.text
    assert "active" in schedule_row.text
    assert "(Europe/Berlin)" in schedule_row.text  # the timing in words
    assert schedule_row.find_element(By.CSS_SELECTOR, ".next-run").text != "—"
    browser.execute_script("document.getElementById('workflows').scrollIntoView()")
    screenshot("1-workflows-and-schedules")

    def schedule_row_now() -> WebElement:
        return browser.find_element(By.CSS_SELECTOR, f'#schedules-table tr[data-schedule-id="{schedule.id}"]')

    schedule_row.find_element(By.CSS_SELECTOR, "button.toggle-schedule").click()
    WebDriverWait(browser, 15, ignored_exceptions=RERENDERED).until(
        lambda d: "paused" in schedule_row_now().text, message="never paused"
    )
    assert Schedule.objects.get(id=schedule.id).enabled is False
    screenshot("2-paused")
    schedule_row_now().find_element(By.CSS_SELECTOR, "button.toggle-schedule").click()
    WebDriverWait(browser, 15, ignored_exceptions=RERENDERED).until(
        lambda d: "active" in schedule_row_now().text, message="never resumed"
    )
    assert Schedule.objects.get(id=schedule.id).enabled is True

    schedule_row_now().find_element(By.CSS_SELECTOR, "button.delete-schedule").click()
    browser.switch_to.alert.accept()
    empty = browser.find_element(By.ID, "schedules-empty")
    WebDriverWait(browser, 15, ignored_exceptions=RERENDERED).until(
        lambda d: empty.is_displayed(), message="the schedule stayed listed"
    )
    assert not Schedule.objects.filter(id=schedule.id).exists()

    # A running workflow can be cancelled from its row: its jobs that have not started never run.
    browser.find_element(By.CSS_SELECTOR, "#workflows-table button.cancel-workflow").click()
    browser.switch_to.alert.accept()
    WebDriverWait(browser, 15, ignored_exceptions=RERENDERED).until(
        # Read in one script: the list is drawn again under the test's feet.
        lambda d: (
            "cancelled"
            in d.execute_script("return document.querySelector('#workflows-table tr[data-workflow-id]').textContent")
        ),
        message="the workflow was never shown cancelled",
    )
    assert not browser.find_elements(By.CSS_SELECTOR, "#workflows-table button.cancel-workflow")
    assert set(Job.objects.filter(owner=client_user).values_list("status", flat=True)) == {JobStatus.CANCELLED}

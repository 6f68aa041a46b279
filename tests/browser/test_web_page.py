"""The client page at `/`, driven in headless Chromium against the live server (and, where a
job must finish, a real Celery worker)."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from apps.jobs.models import Job, JobStatus
from tests.browser.conftest import PASSWORD
from tests.factories import JobFactory, UserFactory

pytestmark = pytest.mark.browser


def sign_in(browser: WebDriver, username: str) -> None:
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.ID, "sign-in").click()
    # The form is ready once the kinds have come back from the API.
    WebDriverWait(browser, 15).until(lambda d: d.find_element(By.ID, "kind").is_enabled())


def open_signed_in(browser: WebDriver, live_server, username: str) -> None:
    browser.get(f"{live_server.url}/")
    sign_in(browser, username)


def labelled(browser: WebDriver, text: str) -> WebElement:
    """The control whose <label> starts with `text`: the form is only usable if labels work."""
    label = browser.find_element(By.XPATH, f"//label[starts-with(normalize-space(), '{text}')]")
    return browser.find_element(By.ID, label.get_attribute("for"))


def progress_value(browser: WebDriver) -> float | None:
    value = browser.find_element(By.ID, "job-progress").get_dom_attribute("value")
    return None if value is None else float(value)


def test_a_client_signs_in_submits_a_sleep_job_and_watches_it_run_to_the_end(
    platform, live_server, browser, screenshot, client_user
):
    platform.worker()

    browser.get(f"{live_server.url}/")

    assert browser.current_url.startswith(f"{live_server.url}/accounts/login/?next=/")
    screenshot("1-sign-in")
    sign_in(browser, "alice")
    assert browser.current_url == f"{live_server.url}/"
    Select(browser.find_element(By.ID, "kind")).select_by_value("diagnostics.sleep")
    # Long enough that a busy machine's page still sees it part-way (it polls, then long-polls).
    labelled(browser, "seconds").send_keys("8")
    screenshot("2-form")
    browser.find_element(By.ID, "submit-button").click()

    status = browser.find_element(By.ID, "job-status")
    WebDriverWait(browser, 20).until(
        lambda d: status.text == "running" and 10 <= (progress_value(d) or 0) < 100,
        message="the page never showed the job running part-way",
    )
    assert "slept" in browser.find_element(By.ID, "job-progress-text").text
    screenshot("3-running")
    WebDriverWait(browser, 30).until(lambda d: status.text == "succeeded", message="the job never succeeded")
    job_id = browser.find_element(By.ID, "job-id").text
    assert progress_value(browser) == 100
    assert '"slept": 8' in browser.find_element(By.ID, "job-result").text
    # It followed the job through its server-sent events, not the long poll.
    assert browser.find_element(By.ID, "current-job").get_dom_attribute("data-live") == "events"
    row = browser.find_element(By.CSS_SELECTOR, f'#jobs-table tr[data-job-id="{job_id}"]')
    WebDriverWait(browser, 5).until(lambda d: "succeeded" in row.text)
    assert "diagnostics.sleep" in row.text
    screenshot("4-succeeded")
    job = Job.objects.get(id=job_id)
    assert (job.owner, job.status, job.payload) == (client_user, JobStatus.SUCCEEDED, {"seconds": 8})

    browser.find_element(By.XPATH, "//button[normalize-space()='Sign out']").click()
    WebDriverWait(browser, 10).until(lambda d: "/accounts/login/" in d.current_url)
    browser.get(f"{live_server.url}/")
    assert "/accounts/login/" in browser.current_url


def test_the_form_follows_each_kinds_schema_and_shows_the_apis_error(live_server, browser, screenshot, client_user):
    open_signed_in(browser, live_server, "alice")
    kind = Select(browser.find_element(By.ID, "kind"))
    kind.select_by_value("diagnostics.flaky")
    assert labelled(browser, "fail_times").get_attribute("type") == "number"
    assert labelled(browser, "permanent").get_attribute("type") == "checkbox"
    kind.select_by_value("testing.limited")  # a schema without properties: raw JSON
    assert labelled(browser, "Payload (JSON)").tag_name == "textarea"

    kind.select_by_value("images.thumbnail")
    # A kind that takes an upload offers a file picker; pasting base64 is folded away.
    assert labelled(browser, "A file to upload (upload_id)").get_attribute("type") == "file"
    assert not labelled(browser, "image_base64").is_displayed()
    browser.find_element(By.CSS_SELECTOR, "details.inline-input summary").click()
    labelled(browser, "image_base64").send_keys("aGVsbG8=")
    formats = Select(labelled(browser, "format"))
    assert [o.text for o in formats.options] == ["(not set)", "png", "jpeg", "webp"]
    formats.select_by_visible_text("png")
    labelled(browser, "sizes").send_keys("4, 64")  # the schema's minimum is 8
    browser.find_element(By.ID, "submit-button").click()

    error = browser.find_element(By.ID, "form-error")
    WebDriverWait(browser, 10).until(lambda d: error.is_displayed(), message="no error was shown")
    assert error.get_attribute("role") == "alert"
    assert "invalid_payload" in error.text
    assert "sizes/0: 4 is less than the minimum of 8" in error.text
    screenshot("error")
    assert not Job.objects.exists()


def test_past_jobs_are_listed_newest_first_and_load_more_follows_the_cursor(
    live_server, browser, screenshot, client_user
):
    jobs = [JobFactory(owner=client_user) for _ in range(55)]
    JobFactory(owner=UserFactory(username="mallory"))  # someone else's: never listed

    open_signed_in(browser, live_server, "alice")

    def rows() -> list[WebElement]:
        return browser.find_elements(By.CSS_SELECTOR, "#jobs-table tbody tr")

    WebDriverWait(browser, 15).until(lambda d: len(rows()) == 50, message="the first page never showed 50 jobs")
    assert rows()[0].get_attribute("data-job-id") == str(jobs[-1].id)
    more = browser.find_element(By.ID, "load-more")
    more.click()
    WebDriverWait(browser, 15).until(lambda d: len(rows()) == 55, message="load more never showed the rest")
    assert [r.get_attribute("data-job-id") for r in rows()] == [str(j.id) for j in reversed(jobs)]
    WebDriverWait(browser, 5).until(lambda d: not more.is_displayed(), message="load more stayed after the last page")
    browser.execute_script("arguments[0].scrollIntoView()", rows()[-1])
    screenshot("listed")


def test_a_workflows_job_shows_its_ref_and_how_far_its_workflow_has_got(live_server, browser, screenshot, client_user):
    from apps.workflows import services

    workflow = services.workflow_submit(
        owner=client_user,
        name="thumbs",
        jobs=[
            {"ref": "fetch", "kind": "diagnostics.noop", "payload": {}},
            {"ref": "resize", "kind": "diagnostics.noop", "payload": {}, "depends_on": ["fetch"]},
        ],
    )
    waiting = Job.objects.get(workflow_id=workflow.id, workflow_ref="resize")
    open_signed_in(browser, live_server, "alice")
    row = f'#jobs-table tr[data-job-id="{waiting.id}"] button'
    WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, row), message="the job is not listed")
    browser.find_element(By.CSS_SELECTOR, row).click()
    box = browser.find_element(By.ID, "job-workflow")
    WebDriverWait(browser, 15).until(
        lambda d: "resize of “thumbs”: 0 of 2 jobs finished (running)" in box.text,
        message="the page never showed the job's workflow",
    )
    assert browser.find_element(By.ID, "job-status").text == "waiting"
    screenshot("workflow-job")

"""Headless Chromium for the browser tests, and a Flower process for the operator's test.

Debian's `chromium` and `chromium-driver` packages only (CI installs them): the driver and
the browser are given by path, so Selenium Manager never looks for, nor downloads, either.
Screenshots go to ARTIFACTS/screenshots, one per step worth seeing and one on any failure.
A missing browser skips these tests on a developer's machine, and fails them in CI (CI set, as
.ci/run sets it), unless ALLOW_BROWSER_SKIP=1 says a skip is meant.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from tests.processes import ARTIFACTS, CeleryProcess, RedisServer, celery_env, free_port, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = ARTIFACTS / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WINDOW_SIZE = "--window-size=1280,1200"
# Every wait in a browser test is bounded by one of these.
PAGE_LOAD_SECONDS = 30
SCRIPT_SECONDS = 10

_reports = pytest.StashKey[dict]()

# The web page's client, alice (tests/browser/test_web_page*.py): signed in with this password.
PASSWORD = "correct-horse-battery-staple"


@pytest.fixture
def client_user(transactional_db):
    from tests.factories import UserFactory

    user = UserFactory(username="alice")
    user.set_password(PASSWORD)
    user.save()
    return user


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    # Keep each phase's report on the test, so the driver's teardown knows whether it failed.
    report = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    return report


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[WebDriver]:
    """A fresh headless Chromium with an empty profile, quit after the test."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        why = (
            f"headless Chromium is not installed ({', '.join(missing)} missing): "
            "apt-get install chromium chromium-driver (.ci/run installs them)"
        )
        if _in_ci() and os.environ.get("ALLOW_BROWSER_SKIP") != "1":
            pytest.fail(f"{why}; in CI the browser tests must run (ALLOW_BROWSER_SKIP=1 to skip them)", pytrace=False)
        pytest.skip(why)
    _forget_screenshots(request.node.name)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in [*CHROMIUM_ARGS, f"--user-data-dir={profile}", WINDOW_SIZE]:
        options.add_argument(arg)
    # The page's console (script errors) is saved beside the screenshot when a test fails.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    service = Service(str(CHROMEDRIVER), log_output=str(ARTIFACTS / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(PAGE_LOAD_SECONDS)
        driver.set_script_timeout(SCRIPT_SECONDS)
        yield driver
        call = request.node.stash.get(_reports, {}).get("call")
        if call is not None and call.failed:
            _save_failure(driver, request.node.name)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _forget_screenshots(test_name: str) -> None:
    """Drop a previous run's screenshots of this test, so the folder shows only this run."""
    if SCREENSHOTS.is_dir():
        for path in SCREENSHOTS.iterdir():
            if path.name.startswith(f"{test_name}-"):
                path.unlink()


def _save_failure(driver: WebDriver, test_name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(WebDriverException):
        driver.save_screenshot(str(SCREENSHOTS / f"{test_name}-failure.png"))
        console = driver.get_log("browser")
        (SCREENSHOTS / f"{test_name}-failure-console.json").write_text(json.dumps(console, indent=2))


@pytest.fixture
def screenshot(browser: WebDriver, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """Save what the browser shows as ARTIFACTS/screenshots/<test>-<step>.png."""

    def save(step: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{request.node.name}-{step}.png"
        assert browser.save_screenshot(str(path)), f"could not save {path}"
        return path

    return save


@dataclass(frozen=True)
class Flower:
    port: int
    user: str
    password: str

    def url(self, path: str = "/") -> str:
        """The address with the credentials in it: Chromium sends them as basic auth."""
        return f"http://{self.user}:{self.password}@127.0.0.1:{self.port}{path}"

    def answers(self) -> bool:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/workers")
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False


@pytest.fixture
def flower(redis_server: RedisServer) -> Iterator[Flower]:
    """Flower as the Procfile runs it (workers.flower, basic auth), on the private Redis."""
    running = Flower(port=free_port(), user="ops", password="secret-pass")
    env = celery_env(
        database_url=os.environ.get("DATABASE_URL", ""),
        redis_url=redis_server.url,
        FLOWER_BASIC_AUTH=f"{running.user}:{running.password}",
    )
    for name in ("FLOWER_PORT", "FLOWER_ADDRESS", "FLOWER_URL_PREFIX"):
        env.pop(name, None)
    # workers.flower execs `celery` from PATH: this interpreter's, even when the venv is not active.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    process = CeleryProcess([sys.executable, "-m", "workers.flower", f"--port={running.port}"], env, "flower")
    try:

        def ready() -> bool:
            if process.proc.poll() is not None:
                raise AssertionError(f"flower exited with {process.proc.returncode}:\n{process.log()[-3000:]}")
            return running.answers()

        wait_for(ready, timeout=60, interval=0.3, what=f"Flower on port {running.port}")
        yield running
    finally:
        process.stop()

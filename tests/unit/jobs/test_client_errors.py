"""Client-input failures (issue 14, item 15): a handler marks them ClientError; they fail the
job at once with a clean message, park as dead letters, count in the depth (and its alert),
and page nobody one letter at a time."""

from __future__ import annotations

import base64
import dataclasses
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from apps.core.alerts import alerts_wait
from apps.deadletters.models import DeadLetter
from apps.deadletters.monitor import DEPTH_ALERT_KEY, dead_letters_monitor
from apps.jobs import lifecycle
from apps.jobs.models import Job, JobAttempt, JobStatus
from apps.jobs.publish import DEAD_LETTER_QUEUE
from apps.jobs.reconciler import redis_client
from apps.jobs.registry import CLIENT_ERROR_TYPE, ClientError, PermanentError, registry
from tests.factories import UserFactory

MONITOR = "apps.deadletters.monitor"


class UnreadableSpreadsheet(ClientError):
    """A kind's own client error: recorded as ClientError all the same."""


def run(job: Job) -> str:
    from config.celery import app
    from workers import tasks  # noqa: F401  (registers one task per kind)
    from workers.runtime import run_attempt

    # The attempt's outcome; the task's body then reports it to Celery (workers.outcomes).
    return run_attempt(app.tasks[job.kind], str(job.id)).status


@pytest.fixture
def handler(monkeypatch):
    """Replace diagnostics.flaky's handler for one test (its task looks the kind up by name)."""

    def install(fn):
        kind = registry.get("diagnostics.flaky")
        monkeypatch.setitem(registry._kinds, kind.name, dataclasses.replace(kind, handler=fn))

    return install


@pytest.fixture(autouse=True)
def _no_monitor_state_in_redis() -> Iterator[None]:
    redis_client().delete(DEAD_LETTER_QUEUE, DEPTH_ALERT_KEY)
    yield
    redis_client().delete(DEAD_LETTER_QUEUE, DEPTH_ALERT_KEY)


def parked(owner: Any, error_type: str, message: str = "it broke") -> Job:
    job = lifecycle.job_submit(owner=owner, kind="diagnostics.flaky", payload={"fail_times": 9})
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w")
    assert claim is not None
    failure = lifecycle.AttemptFailure(error_type, message, "Traceback...", permanent=True)
    assert lifecycle.job_fail_attempt(claim=claim, failure=failure) == "failed"
    return job


def alert_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == MONITOR and r.levelno == logging.ERROR]


def test_a_client_error_is_a_permanent_error():
    assert issubclass(ClientError, PermanentError)


@pytest.mark.django_db(transaction=True)
def test_a_client_error_fails_the_job_at_once_recorded_as_client_error(handler, caplog):
    def refuse(ctx, payload):
        raise UnreadableSpreadsheet("Row 3 of the spreadsheet has 4 columns; the header has 3.")

    handler(refuse)
    job = lifecycle.job_submit(owner=UserFactory(), kind="diagnostics.flaky", payload={"fail_times": 0})

    with caplog.at_level(logging.WARNING, logger="workers.runtime"):
        assert run(job) == JobStatus.FAILED

    job.refresh_from_db()
    assert job.attempts == 1
    assert job.max_attempts > 1  # attempts were left: no retry all the same
    assert (job.error_type, job.error_message) == (
        CLIENT_ERROR_TYPE,
        "Row 3 of the spreadsheet has 4 columns; the header has 3.",
    )
    assert JobAttempt.objects.get(job=job).outcome == "permanent"
    assert DeadLetter.objects.get(job=job).error_type == CLIENT_ERROR_TYPE
    # The worker's line about it is a warning: the client's input, not the platform, failed.
    assert not [r for r in caplog.records if r.name == "workers.runtime" and r.levelno >= logging.ERROR]


@pytest.mark.django_db(transaction=True)
def test_a_bad_image_fails_with_a_clean_message_and_no_object_repr(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    payload = {"image_base64": base64.b64encode(b"hello, world").decode(), "sizes": [16]}
    job = lifecycle.job_submit(owner=UserFactory(), kind="images.thumbnail", payload=payload)

    assert run(job) == JobStatus.FAILED

    job.refresh_from_db()
    assert job.attempts == 1
    assert job.error_type == CLIENT_ERROR_TYPE
    assert job.error_message.startswith("The data is not an image")
    assert not re.search(r"0x[0-9a-f]{6,}|BytesIO|<|/", job.error_message)


def test_client_error_letters_do_not_raise_the_new_letter_alert(user, caplog):
    bad_input = parked(user, CLIENT_ERROR_TYPE, "The data is not an image Pillow can read.")
    broken = parked(user, "KeyError", "'total'")

    with caplog.at_level(logging.ERROR, logger=MONITOR):
        figures = dead_letters_monitor()
    assert alerts_wait(timeout=20), "alerts still undelivered after 20 s"

    assert figures["new"] == 1
    assert figures["depth"] == 2  # both count in the depth
    (line,) = alert_lines(caplog)
    assert line.startswith("ALERT 1 new dead letter(s): 1 diagnostics.flaky; 2 open in all")
    # The client's letter is settled too, so no later sweep alerts it either.
    assert DeadLetter.objects.get(job=bad_input).alerted_at is not None
    assert DeadLetter.objects.get(job=broken).alerted_at is not None
    caplog.clear()
    assert dead_letters_monitor()["new"] == 0
    assert alert_lines(caplog) == []


def test_client_error_letters_count_toward_the_depth_alert(user, settings, caplog):
    settings.DEAD_LETTER_ALERT_DEPTH = 1
    for _ in range(2):
        parked(user, CLIENT_ERROR_TYPE, "Upload 0b6f0f5e-7b7a-4f0e-9d57-1b1f2f6f8f11's file is gone; upload it again.")

    with caplog.at_level(logging.ERROR, logger=MONITOR):
        figures = dead_letters_monitor()
    assert alerts_wait(timeout=20), "alerts still undelivered after 20 s"

    assert (figures["new"], figures["depth"], figures["depth_alert"]) == (0, 2, 1)
    (line,) = alert_lines(caplog)
    assert line.startswith("ALERT dead-letter depth 2 is over the threshold of 1")

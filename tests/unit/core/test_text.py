"""Text from outside is cleaned before PostgreSQL sees it. A NUL or a lone surrogate in a
handler's error, a receiver's answer or a result made the write of the outcome itself fail:
the attempt then ended as lost (its lease expired) and the job kept retrying instead of
ending as what it was."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone

from apps.core.text import clean_json, clean_text
from apps.deadletters.models import DeadLetter
from apps.jobs import lifecycle
from apps.jobs.models import Job, JobAttempt, JobStatus, JobStep
from apps.jobs.registry import PermanentError, registry
from apps.webhooks import services as webhooks
from tests.factories import JobFactory, UserFactory

DIRTY = "refused\x00 by \ud800 the receiver"
CLEAN = "refused by \ufffd the receiver"


# --- the helpers -----------------------------------------------------------------------------


def test_clean_text_removes_nul_and_replaces_lone_surrogates():
    cleaned = clean_text(DIRTY)

    assert cleaned == CLEAN
    cleaned.encode("utf-8")  # what psycopg does with it: no UnicodeEncodeError


def test_clean_text_joins_a_surrogate_pair_into_its_character():
    assert clean_text("smile \ud83d\ude00, low \udc00 high \ud83d") == "smile \U0001f600, low \ufffd high \ufffd"


def test_clean_text_leaves_ordinary_text_alone_and_cuts_to_the_limit():
    assert clean_text("plain ascii") == "plain ascii"
    assert clean_text("héllo wörld ✓") == "héllo wörld ✓"
    assert clean_text("a\x00bcdef", 3) == "abc"
    assert clean_text("\ud800\ud800xyz", 3) == "\ufffd\ufffdx"


def test_clean_json_cleans_strings_and_keys_at_any_depth():
    dirty = {"text\x00": ["a\x00b", {"deep": "\udfff"}], "n": 1, "ok": True, "none": None, "t": ("x\x00",)}

    assert clean_json(dirty) == {"text": ["ab", {"deep": "\ufffd"}], "n": 1, "ok": True, "none": None, "t": ["x"]}


def test_clean_json_returns_a_clean_value_as_it_is():
    value = {"made": [1, 2.5, "three", "ünïcode ✓", "\U0001f600", "a literal \\u0000 stays"]}

    assert clean_json(value) is value
    assert clean_json({"after a backslash": "\\\x00"}) == {"after a backslash": "\\"}


def test_clean_json_refuses_what_is_not_json():
    with pytest.raises(TypeError):
        clean_json({"when": timezone.now()})


# --- through the worker's runtime ---------------------------------------------------------


def run(job: Job) -> str:
    from config.celery import app
    from workers import tasks  # noqa: F401  (registers one task per kind)
    from workers.runtime import run_attempt

    # The attempt's outcome; the task's body then reports it to Celery (workers.outcomes).
    return run_attempt(app.tasks[job.kind], str(job.id)).status


@pytest.fixture
def handler(monkeypatch):
    """Replace the diagnostics.flaky kind's handler for one test (the registered task looks
    the kind up by name when it runs)."""

    def install(fn):
        kind = registry.get("diagnostics.flaky")
        monkeypatch.setitem(registry._kinds, kind.name, dataclasses.replace(kind, handler=fn))

    return install


def flaky_job() -> Job:
    return lifecycle.job_submit(owner=UserFactory(), kind="diagnostics.flaky", payload={"fail_times": 0})


@pytest.mark.django_db(transaction=True)
def test_a_permanent_error_with_nul_and_a_lone_surrogate_fails_the_job_with_a_dead_letter(handler):
    def refuse(ctx, payload):
        ctx.progress(50, "half\x00way \udc80")
        ctx.step("charge\x00card", lambda: {"receipt\x00": "r-\ud800"})
        raise PermanentError(DIRTY)

    handler(refuse)
    job = flaky_job()

    assert run(job) == JobStatus.FAILED

    job.refresh_from_db()
    assert (job.status, job.error_type, job.error_message) == (JobStatus.FAILED, "PermanentError", CLEAN)
    assert CLEAN in job.error_traceback
    assert job.progress_message == "halfway \ufffd"
    attempt = JobAttempt.objects.get(job=job)
    assert (attempt.outcome, attempt.error_message) == ("permanent", CLEAN)
    assert "\x00" not in attempt.traceback
    letter = DeadLetter.objects.get(job=job)
    assert letter.error_message == CLEAN
    assert letter.errors[0]["error_message"] == CLEAN
    step = JobStep.objects.get(job=job)
    assert (step.name, step.result) == ("chargecard", {"receipt": "r-\ufffd"})


@pytest.mark.django_db(transaction=True)
def test_a_result_with_nul_and_a_lone_surrogate_is_stored_cleaned(handler):
    handler(lambda ctx, payload: {"note\x00": ["a\x00b", "\ud800"], "n": 3})
    job = flaky_job()

    assert run(job) == JobStatus.SUCCEEDED

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.result == {"note": ["ab", "\ufffd"], "n": 3}


@pytest.mark.django_db(transaction=True)
def test_a_retryable_error_with_nul_is_a_retry_not_a_lost_attempt(handler):
    def fail(ctx, payload):
        raise ValueError("bad byte \x00 here")

    handler(fail)
    job = flaky_job()

    assert run(job) == JobStatus.RETRYING

    attempt = JobAttempt.objects.get(job=job)
    assert (attempt.outcome, attempt.error_type, attempt.error_message) == ("failed", "ValueError", "bad byte  here")


def test_a_lost_attempts_record_is_cleaned(db):
    job = JobFactory(status=JobStatus.RUNNING, attempts=1, started_at=timezone.now())

    lifecycle.record_lost_attempt(
        job=job, now=timezone.now(), outcome="lost", error_type="Worker\x00Lost", error_message=DIRTY
    )

    attempt = JobAttempt.objects.get(job=job)
    assert (attempt.error_type, attempt.error_message) == ("WorkerLost", CLEAN)


# --- a webhook receiver that answers with a NUL ----------------------------------------------


@pytest.fixture
def nul_receiver() -> Iterator[str]:
    """Answers every POST with `400 refused\\0` and a body holding a NUL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b"refused\x00 for good"
            self.send_response(400, "refused\x00")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.mark.django_db(transaction=True)
def test_a_delivery_refused_with_a_nul_fails_permanently_with_the_answer_recorded(settings, nul_receiver):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    now = timezone.now()
    finished = JobFactory(
        status=JobStatus.SUCCEEDED, attempts=1, started_at=now - timedelta(seconds=1), finished_at=now
    )
    delivery = webhooks.webhook_delivery_submit(job_id=str(finished.id), url=nul_receiver)

    assert run(delivery) == JobStatus.FAILED

    delivery.refresh_from_db()
    assert delivery.status == JobStatus.FAILED
    assert delivery.error_type == "PermanentError"
    assert "answered 400 refused: refused for good" in delivery.error_message
    attempt = JobAttempt.objects.get(job=delivery)
    assert attempt.outcome == "permanent"
    assert "\x00" not in attempt.error_message
    assert DeadLetter.objects.filter(job=delivery, state=DeadLetter.State.OPEN).exists()

"""Logs kept with each attempt (issue 20, item 3), in the worker: what a handler logs through
ctx.log or the logging module is kept under its attempt, capped, written in one fenced
INSERT, and never when the handler logged nothing."""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid

import pytest

from apps.jobs import lifecycle
from apps.jobs.models import Job, JobLogLine
from apps.jobs.registry import registry
from tests.factories import UserFactory
from tests.processes import wait_for
from workers import joblog
from workers.leases import LeaseKeeper

FLAKY = "diagnostics.flaky"


def run(job: Job) -> str:
    from config.celery import app
    from workers import tasks  # noqa: F401  (registers one task per kind)
    from workers.runtime import run_attempt

    return run_attempt(app.tasks[job.kind], str(job.id)).status


@pytest.fixture
def handler(monkeypatch):
    """Replace diagnostics.flaky's handler for one test (its task looks the kind up by name)."""

    def install(fn):
        kind = registry.get(FLAKY)
        monkeypatch.setitem(registry._kinds, kind.name, dataclasses.replace(kind, handler=fn))

    return install


@pytest.fixture
def job(transactional_db):
    return lifecycle.job_submit(owner=UserFactory(), kind=FLAKY, payload={"fail_times": 0})


def lines(job: Job, attempt: int | None = None) -> list[tuple[int, int, str, str, str]]:
    rows = JobLogLine.objects.filter(job_id=job.id).order_by("attempt", "seq")
    if attempt is not None:
        rows = rows.filter(attempt=attempt)
    return [(r.attempt, r.seq, r.level, r.logger, r.message) for r in rows]


def test_it_keeps_ctx_log_and_logging_lines_under_the_attempt(job, handler):
    def logs(ctx, payload):
        ctx.log("fetching the page")
        logging.getLogger("tests.handler").warning("slow answer: %s s", 3)
        ctx.log("nearly there", level="debug")  # kept whatever the logging level
        logging.getLogger("tests.handler").debug("not kept: below the configured level")
        return {"ok": True}

    handler(logs)
    assert run(job) == "succeeded"

    assert lines(job) == [
        (1, 1, "INFO", FLAKY, "fetching the page"),
        (1, 2, "WARNING", "tests.handler", "slow answer: 3 s"),
        (1, 3, "DEBUG", FLAKY, "nearly there"),
    ]


def test_each_retry_keeps_its_own_lines_under_its_number(job, handler):
    def fails_once(ctx, payload):
        ctx.log(f"attempt {ctx.attempt} begins")
        if ctx.attempt == 1:
            raise RuntimeError("the service is away")
        return {}

    handler(fails_once)
    assert run(job) == "retrying"
    Job.objects.filter(id=job.id).update(status="queued", run_at=None)
    assert run(job) == "succeeded"

    assert lines(job) == [(1, 1, "INFO", FLAKY, "attempt 1 begins"), (2, 1, "INFO", FLAKY, "attempt 2 begins")]


def test_an_exception_logged_with_exc_info_keeps_its_traceback(job, handler):
    def logs_exception(ctx, payload):
        try:
            {}["missing"]
        except KeyError:
            logging.getLogger("tests.handler").exception("lookup failed")
        return {}

    handler(logs_exception)
    assert run(job) == "succeeded"

    [(_, _, level, _, message)] = lines(job)
    assert level == "ERROR"
    assert message.startswith("lookup failed\nTraceback (most recent call last):")
    assert "KeyError: 'missing'" in message


def test_it_keeps_the_first_lines_and_says_how_many_more_were_dropped(job, handler, settings):
    settings.JOB_LOG_MAX_LINES = 3

    def chatty(ctx, payload):
        for i in range(10):
            ctx.log(f"line {i}")
        return {}

    handler(chatty)
    assert run(job) == "succeeded"

    kept = lines(job)
    assert [m for *_, m in kept[:3]] == ["line 0", "line 1", "line 2"]
    assert len(kept) == 4
    assert kept[3][1:4] == (4, "WARNING", joblog.MARKER_LOGGER)
    assert kept[3][4].startswith("7 more lines dropped")


def test_the_byte_cap_cuts_the_line_that_crosses_it_and_drops_the_rest(job, handler, settings):
    settings.JOB_LOG_MAX_BYTES = 1000

    def big(ctx, payload):
        ctx.log("a" * 600)
        ctx.log("é" * 600)  # 1,200 bytes: cut to what fits, on a character boundary
        ctx.log("dropped")
        return {}

    handler(big)
    assert run(job) == "succeeded"

    kept = lines(job)
    assert len(kept) == 3
    assert kept[1][4].endswith("[cut: the attempt's log reached JOB_LOG_MAX_BYTES]")
    assert sum(len(m.encode()) for *_, m in kept[:2]) <= 1000
    assert kept[2][4].startswith("1 more lines dropped")


def test_a_job_that_logs_nothing_costs_no_query_for_its_log(job, handler, django_assert_num_queries):
    handler(lambda ctx, payload: {})
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w")
    log = joblog.AttemptLog(claim, max_lines=10, max_bytes=1000)
    with django_assert_num_queries(0), joblog.capturing(log):
        pass
    assert not JobLogLine.objects.exists()


def test_lines_are_written_in_one_insert(job, django_assert_num_queries):
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w")
    log = joblog.AttemptLog(claim, max_lines=100, max_bytes=10_000)
    with joblog.capturing(log):
        for i in range(50):
            logging.getLogger("tests.handler").info("line %s", i)
        with django_assert_num_queries(1):
            log.flush()  # what the lease keeper does at a renewal
        logging.getLogger("tests.handler").info("after the renewal")
    assert len(lines(job)) == 51
    assert lines(job)[-1][1:] == (51, "INFO", "tests.handler", "after the renewal")


def test_an_attempt_that_lost_its_lease_writes_no_lines(job):
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w")
    log = joblog.AttemptLog(claim, max_lines=100, max_bytes=10_000)
    with joblog.capturing(log):
        logging.getLogger("tests.handler").info("before")
        # The reconciler gave the job to another attempt meanwhile.
        Job.objects.filter(id=job.id).update(lease_token="00000000-0000-0000-0000-000000000001", attempts=2)
        logging.getLogger("tests.handler").info("after")
    assert not JobLogLine.objects.exists()


def test_records_of_other_threads_are_not_the_attempts(job):
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w")
    log = joblog.AttemptLog(claim, max_lines=100, max_bytes=10_000)
    with joblog.capturing(log):
        other = threading.Thread(target=lambda: logging.getLogger("tests.other").warning("another job's line"))
        other.start()
        other.join(5)
        logging.getLogger("tests.handler").warning("mine")
    assert [m for *_, m in lines(job)] == ["mine"]


def test_a_bad_level_is_a_clear_error(job):
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w")
    log = joblog.AttemptLog(claim, max_lines=10, max_bytes=1000)
    with pytest.raises(ValueError, match=r"ctx\.log level must be one of debug, info, warning, error, critical"):
        joblog.log_line(log, FLAKY, "x", level="loud")


def test_keeping_logs_can_be_turned_off(job, handler, settings):
    settings.JOB_LOG_MAX_LINES = 0

    def logs(ctx, payload):
        ctx.log("not kept")
        return {}

    handler(logs)
    assert run(job) == "succeeded"
    assert not JobLogLine.objects.exists()


def test_an_attempt_abandoned_at_its_hard_limit_keeps_its_lines_and_ignores_later_ones(transactional_db):
    """worker-io: the keeper ends a thread's attempt it cannot kill. It writes the attempt's
    lines first, while the lease still holds; what the thread logs afterwards is not kept."""
    seed = lifecycle.lease_seed(task_id=str(uuid.uuid4()), worker="io@host", pid=1)
    job = lifecycle.job_submit(owner=UserFactory(), kind=FLAKY, payload={"fail_times": 0})
    claim = lifecycle.job_claim(job_id=str(job.id), worker="io@host", seed=seed)
    keeper = LeaseKeeper()
    kind = dataclasses.replace(registry.get(FLAKY), soft_time_limit=0.1, time_limit=0.3)
    lease = keeper.hold(claim, kind=kind, seed=seed)
    log = lease.joblog = joblog.AttemptLog(claim, max_lines=1, max_bytes=1000)

    with joblog.capturing(log):
        logging.getLogger("tests.handler").info("still waiting on the call")
        logging.getLogger("tests.handler").info("dropped by the cap")
        wait_for(lambda: Job.objects.get(id=job.id).status == "retrying", timeout=5, what="the abandonment")
        logging.getLogger("tests.handler").info("the call returned, too late")

    assert [(a, s, m[:26]) for a, s, _, _, m in lines(job)] == [
        (1, 1, "still waiting on the call"),
        (1, 2, "1 more lines dropped (the "),
    ]


def test_lines_logged_while_a_renewal_writes_are_written_by_the_next(job, monkeypatch):
    """The lease keeper's write runs on its own thread while the handler goes on logging."""
    claim = lifecycle.job_claim(job_id=str(job.id), worker="w")
    log = joblog.AttemptLog(claim, max_lines=100, max_bytes=10_000)
    write = joblog.joblogs.job_log_lines_write

    def write_while_the_handler_logs(**kwargs):
        log.add(level="INFO", name="tests.handler", message="logged during the write")
        return write(**kwargs)

    with joblog.capturing(log):
        logging.getLogger("tests.handler").info("before the renewal")
        monkeypatch.setattr(joblog.joblogs, "job_log_lines_write", write_while_the_handler_logs)
        log.flush()
        monkeypatch.setattr(joblog.joblogs, "job_log_lines_write", write)

    assert [(s, m) for _, s, _, _, m in lines(job)] == [(1, "before the renewal"), (2, "logged during the write")]

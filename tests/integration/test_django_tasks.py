"""Django's task API on a real Celery worker, Redis and PostgreSQL: a @task enqueued with
.enqueue() runs as a job, and its TaskResult, refreshed from the job, shows how it ended."""

from __future__ import annotations

import pytest

from apps.deadletters.models import DeadLetter
from apps.jobs.models import Job, JobAttempt
from apps.jobs.tasks.compat import TaskResult, TaskResultStatus, task_backends
from tests import task_kinds
from tests.processes import wait_for

pytestmark = pytest.mark.integration

# The worker imports the test tasks as it would an app's: through the setting.
TASK_ENV = {"TASK_MODULES": "tests.task_kinds"}


@pytest.fixture
def tasks(platform, settings):
    settings.TASK_MODULES = ["tests.task_kinds"]
    backend = task_backends["default"]
    backend.forget_owner()  # the database was emptied since another test made it
    yield platform
    backend.forget_owner()


def wait_finished(result: TaskResult, timeout: float) -> TaskResult:
    def finished() -> bool:
        result.refresh()
        return result.is_finished

    wait_for(finished, timeout=timeout, interval=0.2, what=f"task result {result.id} to finish")
    return result


def test_an_enqueued_task_runs_on_a_real_worker_and_its_result_shows_the_return_value(tasks):
    worker = tasks.worker(env=TASK_ENV)

    result = task_kinds.add.enqueue(2, b=40)

    assert result.status == TaskResultStatus.READY
    wait_finished(result, timeout=30)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 42
    assert result.attempts == 1
    assert result.worker_ids[0].startswith(worker.name)
    assert result.errors == []
    assert result.enqueued_at <= result.started_at <= result.finished_at
    job = Job.objects.get(id=result.id)
    assert (job.status, job.result, job.owner.username) == ("succeeded", 42, "django-tasks")
    # The kind is its own Celery task name, as every kind is (Flower, routing, rate limits).
    assert "Task tests.task_kinds.add[" in worker.log()


def test_a_failing_task_shows_failed_with_its_error_and_is_parked_as_a_dead_letter(tasks):
    tasks.worker(env=TASK_ENV)

    result = task_kinds.explode.enqueue("kaboom")

    wait_finished(result, timeout=30)
    assert result.status == TaskResultStatus.FAILED
    assert result.attempts == 1
    [error] = result.errors
    assert error.exception_class_path == "tests.task_kinds.TaskBoom"
    assert error.exception_class is task_kinds.TaskBoom
    assert "tests.task_kinds.TaskBoom: kaboom" in error.traceback
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    assert DeadLetter.objects.filter(job_id=result.id).exists()


def test_a_task_that_fails_is_retried_and_its_context_counts_the_attempts(tasks):
    tasks.worker(env=TASK_ENV)
    tasks.beat(**TASK_ENV)  # the reconciler puts a job back in its queue when its backoff ends

    result = task_kinds.flaky.enqueue(fail_times=2)

    wait_finished(result, timeout=60)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"attempt": 3, "id": result.id}
    assert result.attempts == 3
    assert [e.exception_class for e in result.errors] == [RuntimeError, RuntimeError]
    assert "attempt 1 fails on purpose" in result.errors[0].traceback
    outcomes = list(JobAttempt.objects.filter(job_id=result.id).order_by("number").values_list("outcome", flat=True))
    assert outcomes == ["failed", "failed", "succeeded"]


def test_an_io_task_runs_on_the_io_workers_threads(tasks):
    tasks.worker_io(env=TASK_ENV, concurrency=4)

    result = task_kinds.fetch.enqueue("https://example.com/")

    wait_finished(result, timeout=30)
    assert result.return_value == "https://example.com/"
    assert Job.objects.get(id=result.id).queue == "io_default"

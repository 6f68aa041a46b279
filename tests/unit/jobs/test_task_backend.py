"""apps.jobs.tasks.backend: django.tasks' enqueue, results and context on the platform's jobs
(the job states are written here as the worker writes them; tests/integration/
test_django_tasks.py runs them on a real worker)."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.core import context
from apps.jobs.lifecycle.submit import job_submit
from apps.jobs.models import Job, JobAttempt, JobStatus
from apps.jobs.registry import PermanentError, registry
from apps.jobs.tasks.backend import JobTaskBackend
from apps.jobs.tasks.compat import (
    InvalidTaskError,
    TaskResultDoesNotExist,
    TaskResultStatus,
    task_backends,
    task_enqueued,
)
from tests import task_kinds
from tests.factories import JobFactory


@pytest.fixture
def backend(db, settings) -> JobTaskBackend:
    settings.TASK_MODULES = ["tests.task_kinds"]
    backend = task_backends["default"]
    backend.forget_owner()  # the last test's owner went with its transaction
    yield backend
    backend.forget_owner()


def _finish(job_id: str, *, status: str, attempts: list[dict], **fields) -> None:
    """Write what the worker writes when attempts end: the job's columns and one row each."""
    now = timezone.now()
    Job.objects.filter(id=job_id).update(status=status, attempts=len(attempts), **fields)
    for number, attempt in enumerate(attempts, start=1):
        JobAttempt.objects.create(
            job_id=job_id, number=number, started_at=now - timedelta(seconds=10 - number), finished_at=now, **attempt
        )


def test_enqueue_submits_a_job_owned_by_the_task_user_and_returns_its_result(backend):
    result = task_kinds.add.enqueue(2, b=3)

    job = Job.objects.get(id=result.id)
    assert (job.kind, job.status, job.priority, job.queue) == ("tests.task_kinds.add", "queued", "default", "default")
    assert job.payload == {"args": [2], "kwargs": {"b": 3}}
    assert job.owner.username == "django-tasks"
    assert not job.owner.has_usable_password()
    assert result.status == TaskResultStatus.READY
    assert (result.args, result.kwargs, result.backend) == ([2], {"b": 3}, "default")
    assert result.enqueued_at == job.created_at
    assert result.attempts == 0
    assert result.errors == []
    assert result.started_at is None
    with pytest.raises(ValueError, match="not finished"):
        _ = result.return_value


def test_the_job_carries_the_request_id_it_was_enqueued_under(backend):
    token = context.request_id.set("req-42")
    try:
        result = task_kinds.add.enqueue(1, 2)
    finally:
        context.request_id.reset(token)
    assert Job.objects.get(id=result.id).request_id == "req-42"


def test_the_owner_is_created_once_and_may_be_named_by_a_setting_or_the_backends_options(backend, settings):
    task_kinds.add.enqueue(1, 1)
    backend.forget_owner()
    task_kinds.add.enqueue(1, 1)
    assert {j.owner.username for j in Job.objects.all()} == {"django-tasks"}

    settings.TASK_OWNER = "reports"
    other = JobTaskBackend("other", {"BACKEND": "x"})
    assert Job.objects.get(id=other.enqueue(task_kinds.add, (1, 1), {}).id).owner.username == "reports"
    named = JobTaskBackend("named", {"BACKEND": "x", "OPTIONS": {"OWNER": "billing"}})
    assert Job.objects.get(id=named.enqueue(task_kinds.add, (1, 1), {}).id).owner.username == "billing"


def test_an_owner_created_in_a_transaction_that_rolls_back_is_not_kept(backend):
    from django.db import transaction

    def enqueue_then_fail() -> None:
        with transaction.atomic():
            task_kinds.add.enqueue(1, 2)
            raise RuntimeError("the caller's transaction fails")

    with pytest.raises(RuntimeError):
        enqueue_then_fail()
    assert not Job.objects.exists()

    result = task_kinds.add.enqueue(1, 2)  # a user that exists, not the rolled-back one

    assert Job.objects.get(id=result.id).owner.username == "django-tasks"


def test_an_argument_json_cannot_hold_raises_type_error_and_submits_nothing(backend):
    with pytest.raises(TypeError, match="Object of type datetime is not JSON serializable"):
        task_kinds.add.enqueue(timezone.now(), 1)
    assert not Job.objects.exists()


def test_a_task_from_a_module_workers_do_not_load_is_refused_at_enqueue(backend, settings):
    settings.TASK_MODULES = []
    with pytest.raises(InvalidTaskError, match="not in TASK_MODULES"):
        task_kinds.add.enqueue(1, 2)
    assert not Job.objects.exists()


def test_a_task_cannot_move_to_another_queue_family_at_enqueue(backend):
    with pytest.raises(InvalidTaskError, match="declared on queue 'default'"):
        task_kinds.add.using(queue_name="io").enqueue(1, 2)
    fetched = task_kinds.fetch.enqueue("https://example.com/")
    assert Job.objects.get(id=fetched.id).queue == "io_default"


@pytest.mark.parametrize(
    ("priority", "expected", "read_back"), [(60, "high", 50), (10, "default", 0), (-100, "low", -50)]
)
def test_a_tasks_priority_chooses_the_jobs(backend, priority, expected, read_back):
    result = task_kinds.add.using(priority=priority).enqueue(1, 2)

    assert Job.objects.get(id=result.id).priority == expected
    assert result.task.priority == priority
    # The job keeps its band, not the number: read back, it is the task's declared priority
    # when that is in the band, else the band's middle.
    assert backend.get_result(result.id).task.priority == read_back


def test_run_after_holds_the_job_until_then(backend):
    when = timezone.now() + timedelta(hours=1)
    result = task_kinds.add.using(run_after=when).enqueue(1, 2)

    job = Job.objects.get(id=result.id)
    assert job.run_at == when
    assert job.published_at is None
    assert result.status == TaskResultStatus.READY
    assert backend.get_result(result.id).task.run_after == when


@pytest.mark.parametrize("result_id", ["3f1c1c7e-0000-4000-8000-000000000000", "not-a-job-id", ""])
def test_get_result_of_an_unknown_id_raises_task_result_does_not_exist(backend, result_id):
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result(result_id)


def test_a_job_that_is_no_tasks_has_no_task_result(backend):
    job = JobFactory()
    with pytest.raises(TaskResultDoesNotExist):
        backend.get_result(str(job.id))


def test_refresh_reads_a_succeeded_job(backend):
    result = task_kinds.add.enqueue(2, 3)
    finished = timezone.now()
    _finish(
        result.id,
        status=JobStatus.SUCCEEDED,
        result=5,
        started_at=finished - timedelta(seconds=1),
        finished_at=finished,
        attempts=[{"worker": "w1@host", "outcome": "succeeded"}],
    )

    result.refresh()

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.attempts == 1
    assert result.worker_ids == ["w1@host"]
    assert result.finished_at == finished
    assert result.last_attempted_at == finished - timedelta(seconds=1)
    assert result.errors == []
    assert task_kinds.add.get_result(result.id).return_value == 5


def test_a_failed_job_shows_each_attempts_error_with_its_class_and_traceback(backend):
    result = task_kinds.add.enqueue(2, 3)
    boom = 'Traceback (most recent call last):\n  File "x.py", line 1, in f\ntests.task_kinds.TaskBoom: no\n'
    _finish(
        result.id,
        status=JobStatus.FAILED,
        finished_at=timezone.now(),
        attempts=[
            {"worker": "w1", "outcome": "failed", "error_type": "RuntimeError", "traceback": "RuntimeError: once\n"},
            {"worker": "w2", "outcome": "permanent", "error_type": "TaskBoom", "traceback": boom},
        ],
    )

    refreshed = backend.get_result(result.id)

    assert refreshed.status == TaskResultStatus.FAILED
    assert [e.exception_class for e in refreshed.errors] == [RuntimeError, task_kinds.TaskBoom]
    assert refreshed.errors[1].traceback == boom
    assert refreshed.attempts == 2
    assert refreshed.worker_ids == ["w1", "w2"]
    with pytest.raises(ValueError, match="Task failed"):
        _ = refreshed.return_value


def test_a_job_waiting_out_its_backoff_is_ready_again_with_its_error(backend):
    result = task_kinds.add.enqueue(2, 3)
    _finish(
        result.id,
        status=JobStatus.RETRYING,
        attempts=[{"worker": "w1", "outcome": "failed", "error_type": "ValueError", "traceback": ""}],
    )
    refreshed = backend.get_result(result.id)
    assert refreshed.status == TaskResultStatus.READY
    assert refreshed.errors[0].exception_class is ValueError


def test_a_running_job_counts_the_attempt_under_way(backend):
    result = task_kinds.add.enqueue(2, 3)
    Job.objects.filter(id=result.id).update(status=JobStatus.RUNNING, attempts=1, worker="w9@host")
    refreshed = backend.get_result(result.id)
    assert refreshed.status == TaskResultStatus.RUNNING
    assert refreshed.attempts == 1
    assert refreshed.worker_ids == ["w9@host"]


def test_a_job_cancelled_while_queued_is_failed_with_job_cancelled(backend):
    from apps.jobs.registry import JobCancelled

    result = task_kinds.add.enqueue(2, 3)
    Job.objects.filter(id=result.id).update(status=JobStatus.CANCELLED, finished_at=timezone.now())
    refreshed = backend.get_result(result.id)
    assert refreshed.status == TaskResultStatus.FAILED
    assert refreshed.errors[0].exception_class is JobCancelled


def test_the_handler_gives_a_context_task_its_attempt_and_result(backend):
    result = task_kinds.flaky.enqueue(fail_times=2)
    Job.objects.filter(id=result.id).update(status=JobStatus.RUNNING, attempts=3, worker="w1")
    handler = registry.get("tests.task_kinds.flaky").handler

    value = handler(SimpleNamespace(job_id=result.id), {"args": [], "kwargs": {"fail_times": 2}})

    assert value == {"attempt": 3, "id": result.id}
    with pytest.raises(RuntimeError, match="attempt 3 fails"):
        handler(SimpleNamespace(job_id=result.id), {"args": [], "kwargs": {"fail_times": 3}})


def test_the_handler_runs_async_tasks_and_refuses_a_return_value_json_cannot_hold(backend):
    ctx = SimpleNamespace(job_id="unused")
    assert registry.get("tests.task_kinds.asynchronous").handler(ctx, {"args": ["a"], "kwargs": {}}) == "A"
    with pytest.raises(PermanentError, match="returned a value JSON cannot hold"):
        registry.get("tests.task_kinds.unjsonable").handler(ctx, {"args": [], "kwargs": {}})


def test_aenqueue_and_arefresh_work_from_async_code(backend):
    result = async_to_sync(task_kinds.add.aenqueue)(4, 5)
    Job.objects.filter(id=result.id).update(status=JobStatus.SUCCEEDED, result=9, attempts=1)
    async_to_sync(result.arefresh)()
    assert result.return_value == 9
    assert async_to_sync(backend.aget_result)(result.id).status == TaskResultStatus.SUCCESSFUL


def test_enqueue_sends_task_enqueued_with_the_result(backend):
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        result = task_kinds.add.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(receiver)
    assert seen == [result.id]


def test_an_api_client_cannot_submit_a_tasks_kind(backend, api):
    response = api.post(
        "/api/v1/jobs", {"kind": "tests.task_kinds.add", "payload": {"args": [1, 2], "kwargs": {}}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_kind"
    assert not Job.objects.exists()


def test_enqueue_costs_the_queries_of_the_apis_submit(backend):
    task_kinds.add.enqueue(1, 2)  # the owner, looked up once per process
    owner = backend.owner()
    with CaptureQueriesContext(connection) as submit:
        job_submit(owner=owner, kind="tests.task_kinds.add", payload={"args": [1, 2], "kwargs": {}})
    with CaptureQueriesContext(connection) as enqueue:
        task_kinds.add.enqueue(1, 2)
    assert len(enqueue) == len(submit)


def test_a_tasks_get_result_refuses_another_tasks_job(backend):
    from django_tasks.exceptions import TaskResultMismatch

    result = task_kinds.explode.enqueue("no")
    with pytest.raises(TaskResultMismatch):
        task_kinds.add.get_result(result.id)


def test_the_owner_reads_a_tasks_job_through_the_api(backend):
    from rest_framework.test import APIClient

    result = task_kinds.add.enqueue(2, 3)
    client = APIClient()
    client.force_authenticate(backend.owner())

    answer = client.get(f"/api/v1/jobs/{result.id}")

    assert answer.status_code == 200
    assert answer.json()["kind"] == "tests.task_kinds.add"
    assert answer.json()["status"] == "queued"

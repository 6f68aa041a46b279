"""apps.jobs.tasks.mapping and the task kinds' declarations: django.tasks' priority, queue,
arguments and errors as a job's, and the kinds a @task declares."""

from __future__ import annotations

import math
import traceback
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.jobs.registry import registry
from apps.jobs.tasks.backend import JobTaskBackend
from apps.jobs.tasks.compat import InvalidTaskError, task_backends
from apps.jobs.tasks.mapping import exception_class_path, platform_priority, task_payload, task_priority
from tests import task_kinds

BACKEND = "apps.jobs.tasks.backend.JobTaskBackend"


def spare(value: int) -> int:
    """A module-level function for the declarations each test makes (and refuses)."""
    return value


@pytest.mark.parametrize(
    ("priority", "expected"),
    [(-100, "low"), (-34, "low"), (-33, "default"), (0, "default"), (33, "default"), (34, "high"), (100, "high")],
)
def test_a_task_priority_maps_onto_the_platforms_three(priority, expected):
    assert platform_priority(priority) == expected


def test_a_jobs_priority_reads_back_as_the_tasks_own_when_it_is_in_that_band():
    assert task_priority("high", 80) == 80
    assert task_priority("high", 0) == 50
    assert task_priority("low", 0) == -50
    assert task_priority("default", 10) == 10


def test_arguments_become_the_payload_as_they_cross_json():
    assert task_payload((1, (2, 3)), {"name": "x", "flags": {"a": True}}) == {
        "args": [1, [2, 3]],
        "kwargs": {"name": "x", "flags": {"a": True}},
    }


def test_an_argument_json_cannot_hold_raises_the_documented_type_error():
    with pytest.raises(TypeError, match="Object of type datetime is not JSON serializable"):
        task_payload((datetime.now(UTC),), {})
    with pytest.raises(TypeError, match="not JSON serializable"):
        task_payload((), {"blob": {1, 2}})


def test_nan_is_refused_at_enqueue_because_postgresql_cannot_store_it():
    with pytest.raises(TypeError, match="must be JSON"):
        task_payload((math.nan,), {})


def _traceback_of(exc: BaseException) -> str:
    try:
        raise exc
    except BaseException as caught:
        return "".join(traceback.format_exception(caught))


def test_an_errors_class_path_is_read_from_its_traceback():
    boom = _traceback_of(task_kinds.TaskBoom("no"))
    assert exception_class_path("TaskBoom", boom) == "tests.task_kinds.TaskBoom"
    assert exception_class_path("ValueError", _traceback_of(ValueError("bad"))) == "builtins.ValueError"


def test_a_chained_errors_path_is_the_last_exceptions():
    try:
        try:
            raise KeyError("first")
        except KeyError as exc:
            raise task_kinds.TaskBoom("second") from exc
    except task_kinds.TaskBoom as exc:
        text = "".join(traceback.format_exception(exc))
    assert exception_class_path("TaskBoom", text) == "tests.task_kinds.TaskBoom"
    assert exception_class_path("KeyError", text) == "builtins.KeyError"


def test_the_platforms_own_error_names_map_to_importable_classes():
    assert exception_class_path("WorkerLost", "") == "billiard.exceptions.WorkerLostError"
    assert exception_class_path("TimeLimitExceeded", "celery.exceptions.SoftTimeLimitExceeded: x") == (
        "celery.exceptions.SoftTimeLimitExceeded"
    )
    assert exception_class_path("JobCancelled", "") == "apps.jobs.registry.JobCancelled"
    assert exception_class_path("RuntimeError", "") == "builtins.RuntimeError"


def test_each_task_is_an_internal_kind_named_after_its_module_path():
    k = registry.get("tests.task_kinds.add")
    assert k.internal
    assert k.description == "Adds two numbers."
    assert k.queue_for(k.priority) == "default"
    assert k.max_attempts == 3
    assert k.payload_errors({"args": [1, 2], "kwargs": {}}) == []
    assert k.payload_errors({"args": [1, 2]}) != []


def test_a_task_may_name_its_kind_and_its_attempts_and_its_priority_sets_the_kinds():
    named = registry.get("testing.tasks.named")
    assert named.priority == "high"
    assert registry.get("tests.task_kinds.explode").max_attempts == 1
    assert registry.get("tests.task_kinds.flaky").max_attempts == 4


def test_the_io_queue_makes_an_io_bound_kind():
    k = registry.get("tests.task_kinds.fetch")
    assert k.io_bound
    assert k.queue_for("default") == "io_default"


def test_an_unknown_queue_name_is_refused_when_the_task_is_declared():
    from django_tasks import task

    with pytest.raises(InvalidTaskError, match="queue 'emails' is not one of this backend's queues"):
        task(queue_name="emails")(spare)
    with pytest.raises(InvalidTaskError, match="queue 'emails'"):
        task_kinds.add.using(queue_name="emails")


def test_a_kind_name_taken_by_another_task_or_a_kind_is_refused():
    from django_tasks import task

    with pytest.raises(InvalidTaskError, match="declared twice"):
        task(kind="tests.task_kinds.add")(spare)
    with pytest.raises(InvalidTaskError, match=r"diagnostics\.noop"):
        task(kind="diagnostics.noop")(spare)
    with pytest.raises(InvalidTaskError, match="max_attempts"):
        task(kind="testing.tasks.zero", max_attempts=0)(spare)
    assert "testing.tasks.zero" not in registry


def test_a_copy_of_a_task_does_not_declare_its_kind_again():
    copy = task_kinds.add.using(priority=80)
    assert copy.priority == 80
    assert registry.get("tests.task_kinds.add").priority == "default"


def test_the_backend_refuses_queues_it_cannot_map():
    with pytest.raises(ImproperlyConfigured, match="'emails'"):
        JobTaskBackend("other", {"BACKEND": BACKEND, "QUEUES": ["default", "emails"]})
    assert JobTaskBackend("other", {"BACKEND": BACKEND, "QUEUES": ["default"]}).queues == {"default"}


def test_the_default_backend_is_this_platforms():
    backend = task_backends["default"]
    assert isinstance(backend, JobTaskBackend)
    assert backend.supports_get_result
    assert backend.supports_defer
    assert backend.supports_priority

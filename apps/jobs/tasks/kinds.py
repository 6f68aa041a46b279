"""A django.tasks task as a kind of job: its Task class, the kind it registers, and the
handler that runs it in the worker.

A task registers its kind when it is created (the `@task` decorator builds it through the
backend's task_class), so importing a module of TASK_MODULES at start-up, as the registry
does, declares its kinds in the web process and the worker alike.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.jobs.models import Job
from apps.jobs.registry import JobContext, Kind, PermanentError, registry
from apps.jobs.tasks.compat import InvalidTaskError, Task, TaskContext
from apps.jobs.tasks.mapping import PAYLOAD_SCHEMA, QUEUE_FAMILIES, platform_priority

KIND_NAME_MAX = Job._meta.get_field("kind").max_length


# Frozen and slotted like django.tasks' Task; Task.using() copies it field by field.
@dataclass(frozen=True, slots=True, kw_only=True)
class JobTask(Task):
    """django.tasks' Task, plus what a job has and a task has not. Where the decorator passes
    its extra keywords to the backend's task class (the backport does), a task may say
    `@task(kind="billing.invoice", max_attempts=5)`; on a Django whose decorator does not,
    both keep their defaults."""

    kind: str | None = None
    """The kind's name; the task's module path (module.function) when not given."""

    max_attempts: int | None = None
    """Attempts before the job fails and is parked as a dead letter; the kinds' default (3)."""

    def __post_init__(self) -> None:
        # Named, not super(): a slotted dataclass is a new class, which zero-argument super()
        # does not know.
        Task.__post_init__(self)
        task_kind_register(self)


class TaskHandler:
    """The kind's handler: calls the task function with the job's arguments (and a
    TaskContext when the task takes one), and returns what it returns, as JSON."""

    def __init__(self, task: Task) -> None:
        self.task = task

    def __call__(self, ctx: JobContext, payload: dict[str, Any]) -> Any:
        task = self.task
        args, kwargs = payload["args"], payload["kwargs"]
        if task.takes_context:
            # The job as it stands (running, this attempt): two small reads, paid only by the
            # tasks that ask for a context.
            result = task.get_backend().get_result(ctx.job_id)
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
        try:
            return json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError) as exc:
            # Another attempt would return the same: no retry.
            raise PermanentError(f"task {task.module_path} returned a value JSON cannot hold: {exc}") from exc

    def __repr__(self) -> str:
        return f"TaskHandler({self.task.module_path})"


_handlers: dict[str, TaskHandler] = {}
_lock = threading.Lock()


def task_kind_name(task: Task) -> str:
    return getattr(task, "kind", None) or task.module_path


def task_kind_register(task: Task) -> None:
    """Declare the task's kind, once: a copy of the task (Task.using) finds it declared. The
    kind is internal: Django code enqueues it, an API client cannot submit it (it would run a
    server function with arguments of the client's choosing)."""
    name = task_kind_name(task)
    if len(name) > KIND_NAME_MAX:
        raise InvalidTaskError(f"Task kind name {name!r} is longer than {KIND_NAME_MAX} characters; give a kind=.")
    max_attempts = getattr(task, "max_attempts", None)
    if max_attempts is not None and (isinstance(max_attempts, bool) or not isinstance(max_attempts, int)):
        raise InvalidTaskError(f"Task {task.module_path}: max_attempts must be a whole number.")
    with _lock:
        existing = _handlers.get(name)
        if existing is not None:
            if existing.task.func is not task.func:
                raise InvalidTaskError(f"Task kind {name!r} is declared twice ({existing.task.module_path}).")
            return
        handler = TaskHandler(task)
        description = (task.func.__doc__ or "").strip().split("\n")[0] or f"django.tasks task {task.module_path}"
        options: dict[str, Any] = {"max_attempts": max_attempts} if max_attempts is not None else {}
        try:
            registry.register(
                Kind(
                    name=name,
                    handler=handler,
                    schema=PAYLOAD_SCHEMA,
                    description=description,
                    priority=platform_priority(task.priority),
                    io_bound=QUEUE_FAMILIES[task.queue_name],
                    internal=True,
                    **options,
                )
            )
        except ValueError as exc:  # a @kind of that name, or a bad max_attempts
            raise InvalidTaskError(f"Task {task.module_path}: {exc}") from None
        _handlers[name] = handler


def task_for_kind(name: str) -> Task | None:
    """The task a kind runs; None when the kind is not a task's."""
    handler = _handlers.get(name)
    return handler.task if handler is not None else None


def task_kind(task: Task) -> Kind:
    """The kind a task enqueues as, or InvalidTaskError saying why it cannot be enqueued."""
    name = task_kind_name(task)
    handler = _handlers.get(name)
    if handler is None or handler.task.func is not task.func:
        raise InvalidTaskError(f"Task {task.module_path} is not declared with this backend.")
    module = task.func.__module__
    if module not in settings.TASK_MODULES and module not in settings.JOB_KIND_MODULES:
        raise InvalidTaskError(
            f"Task {task.module_path} is in module {module!r}, which is not in TASK_MODULES: "
            "workers would not know it. Add the module to TASK_MODULES."
        )
    k = registry.get(name)
    if QUEUE_FAMILIES[task.queue_name] != k.io_bound:
        declared = handler.task.queue_name
        raise InvalidTaskError(
            f"Task {task.module_path} was declared on queue {declared!r}; its kind's queue is fixed then, "
            f"so it cannot be enqueued on {task.queue_name!r}."
        )
    return k

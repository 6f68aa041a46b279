"""django.tasks tasks that exist only for tests: each one a kind through apps.jobs.tasks. The
integration tests give their workers TASK_MODULES=tests.task_kinds; the unit tests import the
module and put it in settings.TASK_MODULES."""

from __future__ import annotations

from typing import Any

from django_tasks import TaskContext, task


class TaskBoom(Exception):
    """What `explode` raises: a class of the tests' own, so its path is checked in full."""


@task
def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b


@task(max_attempts=1)
def explode(message: str) -> None:
    raise TaskBoom(message)


@task(takes_context=True, max_attempts=4)
def flaky(context: TaskContext, fail_times: int) -> dict[str, Any]:
    """Fails its first `fail_times` attempts, then says which attempt it was and its id."""
    if context.attempt <= fail_times:
        raise RuntimeError(f"attempt {context.attempt} fails on purpose")
    return {"attempt": context.attempt, "id": context.task_result.id}


@task(kind="testing.tasks.named", priority=50)
def named(**kwargs: Any) -> dict[str, Any]:
    return kwargs


@task(queue_name="io")
def fetch(url: str) -> str:
    return url


@task
def unjsonable() -> object:
    return object()


@task
async def asynchronous(value: str) -> str:
    return value.upper()

"""The one place that knows where Django's task API lives: `django.tasks` from Django 6 on,
the `django_tasks` backport before. Everything else imports these names from here."""

from __future__ import annotations

import dataclasses
from typing import Any

try:  # Django 6
    from django.tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskError
    from django.tasks.exceptions import InvalidTask as InvalidTaskError
    from django.tasks.exceptions import TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:  # Django 5.2 with the django-tasks backport
    from django_tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskError
    from django_tasks.exceptions import InvalidTaskError, TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started

# What later versions renamed or added: success is SUCCESSFUL in Django 6.0 and the backport
# 0.12, SUCCEEDED after; a TaskResult later takes a `metadata` dict too.
SUCCEEDED = getattr(TaskResultStatus, "SUCCEEDED", None) or TaskResultStatus.SUCCESSFUL
TASK_RESULT_EXTRA: dict[str, Any] = (
    {"metadata": {}} if "metadata" in {f.name for f in dataclasses.fields(TaskResult)} else {}
)

__all__ = [
    "SUCCEEDED",
    "TASK_RESULT_EXTRA",
    "BaseTaskBackend",
    "InvalidTaskError",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]

"""The django.tasks backend that runs tasks as this platform's jobs.

    TASKS = {"default": {"BACKEND": "apps.jobs.tasks.backend.JobTaskBackend"}}

`.enqueue()` submits a job through the API's own path (apps.jobs.lifecycle.submit: checks,
admission, the outbox publish after commit), so a task gets what every job gets: retries with
backoff, dead letters, the admin, the API, Flower, metrics. The TaskResult's id is the job's.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction

from apps.core import context
from apps.jobs.lifecycle.submit import job_submit
from apps.jobs.tasks.compat import BaseTaskBackend, InvalidTaskError, Task, TaskResult, task_enqueued
from apps.jobs.tasks.kinds import JobTask, task_kind
from apps.jobs.tasks.mapping import QUEUE_FAMILIES, platform_priority, task_payload
from apps.jobs.tasks.results import task_result_get, task_result_of


class JobTaskBackend(BaseTaskBackend):
    """OPTIONS: "OWNER", the username whose jobs these are (settings.TASK_OWNER by default).
    QUEUES, when given, may name "default" and "io" (apps.jobs.tasks.mapping.QUEUE_FAMILIES)."""

    task_class = JobTask

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        if "QUEUES" not in params:
            self.queues = set(QUEUE_FAMILIES)
        unknown = sorted(self.queues - set(QUEUE_FAMILIES))
        if unknown:
            raise ImproperlyConfigured(
                f"TASKS[{alias!r}]['QUEUES'] names {unknown}; this backend's queues are {sorted(QUEUE_FAMILIES)} "
                "(the platform's priority queues, and the I/O ones)."
            )
        self.owner_username: str = self.options.get("OWNER") or settings.TASK_OWNER
        self._owner: AbstractBaseUser | None = None

    def validate_task(self, task: Task) -> None:
        if task.queue_name not in self.queues:
            raise InvalidTaskError(
                f"Task {task.module_path}: queue {task.queue_name!r} is not one of this backend's queues "
                f"({', '.join(sorted(self.queues))}): 'default' runs on the priority queues, 'io' on the I/O ones."
            )
        super().validate_task(task)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Submit the task as a job and return its result, READY. Raises InvalidTaskError for a
        task this backend cannot run, TypeError for arguments JSON cannot hold, and the
        platform's admission errors (apps.core.errors: queue full, quota) as the API would
        answer them. Inside a transaction the job is published when it commits."""
        self.validate_task(task)
        k = task_kind(task)
        job = job_submit(
            owner=self.owner(),
            kind=k.name,
            payload=task_payload(args, kwargs),
            priority=platform_priority(task.priority),
            run_at=task.run_after,
            # The request (or the job) this enqueue happens in, so the logs tie them together.
            request_id=context.request_id.get(),
        )
        result = task_result_of(task=task, job=job, attempts=[], backend=self.alias)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        return task_result_get(result_id=result_id, backend=self.alias)

    def owner(self) -> AbstractBaseUser:
        """The user the jobs belong to, created on first use (no password: it cannot log in;
        `manage.py issue_token` gives it a token to read its jobs through the API). Kept for
        the process's life, so an enqueue costs no query for it."""
        if self._owner is None:
            user_model = get_user_model()
            user, created = user_model.objects.get_or_create(**{user_model.USERNAME_FIELD: self.owner_username})
            if created:
                user.set_unusable_password()
                user.save(update_fields=["password"])
                if connection.in_atomic_block:
                    # Created in the caller's transaction, which may yet roll back: kept only
                    # once it commits, or the next enqueue would name a user that is gone.
                    transaction.on_commit(lambda: setattr(self, "_owner", user))
                    return user
            self._owner = user
        return self._owner

    def forget_owner(self) -> None:
        """Look the owner up again on the next enqueue (tests whose database was emptied)."""
        self._owner = None

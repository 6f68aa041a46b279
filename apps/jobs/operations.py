"""What admins do to jobs one at a time or by the ten thousand: retry, cancel, and the
background runner for "everything matching this filter" (BulkOperation). Other apps add
targets of their own (the dead letters: redrive, discard) with bulk_target_register."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import QueryDict
from django.test import RequestFactory
from django.utils import timezone

from apps.core.errors import Conflict
from apps.jobs import lifecycle
from apps.jobs.models import BulkOperation, Job, JobStatus

logger = logging.getLogger(__name__)

CHUNK = 500


def job_retry(*, job_id: Any, actor: str = "") -> bool:
    """Run a failed or cancelled job again with a fresh allowance of attempts. A failed job's
    open dead letter is closed as redriven in the same transaction (job_requeued)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            return False
        lifecycle.job_requeue_fresh(job=job, actor=actor)
    logger.info("job %s (%s) retried by %s", job.id, job.kind, actor or "?")
    return True


def job_cancel_by_id(*, job_id: Any) -> bool:
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return False
    try:
        lifecycle.job_cancel(job=job)
    except Conflict:
        return False
    return True


@dataclass(frozen=True)
class BulkTarget:
    """What a bulk operation can act on: the model whose admin changelist selects the rows,
    and each action as a function of (primary key, actor) that says whether it changed
    anything."""

    model: type[Model]
    actions: dict[str, Callable[[Any, str], bool]]


_targets: dict[str, BulkTarget] = {}


def bulk_target_register(name: str, target: BulkTarget) -> None:
    """Let bulk operations act on `name` (an app's AppConfig.ready calls it)."""
    _targets[name] = target


bulk_target_register(
    "jobs",
    BulkTarget(
        model=Job,
        actions={
            BulkOperation.Action.RETRY: lambda pk, actor: job_retry(job_id=pk, actor=actor),
            BulkOperation.Action.CANCEL: lambda pk, actor: job_cancel_by_id(job_id=pk),
        },
    ),
)


def _apply(action: str, target: str, pk: Any, actor: str) -> bool:
    act = _targets[target].actions.get(action) if target in _targets else None
    if act is None:
        raise ValueError(f"no action {action} on {target}")
    try:
        return act(pk, actor)
    except Conflict:
        return False


def apply_many(*, action: str, target: str, pks: list[Any], actor: str) -> int:
    return sum(_apply(action, target, pk, actor) for pk in pks)


def bulk_operation_start(*, action: str, target: str, filters: str, actor: str) -> BulkOperation:
    """Record the operation; beat works through it (bulk_operations_advance), so it never
    waits behind a backlog of jobs or holds a worker's slot."""
    return BulkOperation.objects.create(action=action, target=target, filters=filters, created_by=actor)


def _matching(operation: BulkOperation) -> QuerySet:
    """The rows the admin's changelist showed with these filters and search, found by the
    same ModelAdmin, so the background run acts on exactly what the admin saw."""
    model = _targets[operation.target].model
    model_admin = admin.site._registry[model]
    request = RequestFactory().get("/", QueryDict(operation.filters))
    User = get_user_model()
    request.user = User.objects.filter(username=operation.created_by, is_staff=True).first() or User(
        is_staff=True, is_superuser=True
    )
    changelist = model_admin.get_changelist_instance(request)
    return changelist.get_queryset(request)


def bulk_operation_run(*, operation_id: int, budget_seconds: float | None = None) -> BulkOperation:
    """Work through the matching rows in chunks by primary key, saving progress after each
    chunk. With a time budget it stops after the chunk that spends it and resumes from the
    saved cursor on the next call; so does an operation whose process died part-way."""
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    operation = BulkOperation.objects.get(pk=operation_id)
    if operation.state in (BulkOperation.State.DONE, BulkOperation.State.FAILED):
        return operation
    try:
        matching = _matching(operation).order_by("pk")
        if operation.total is None:
            operation.total = matching.count()
        operation.state = BulkOperation.State.RUNNING
        operation.save(update_fields=["total", "state"])
        while True:
            page = matching
            if operation.cursor:
                page = page.filter(pk__gt=operation.cursor)
            pks = list(page.values_list("pk", flat=True)[:CHUNK])
            if not pks:
                break
            operation.changed += apply_many(
                action=operation.action, target=operation.target, pks=pks, actor=operation.created_by
            )
            operation.processed += len(pks)
            operation.cursor = str(pks[-1])
            operation.save(update_fields=["changed", "processed", "cursor"])
            if deadline is not None and time.monotonic() > deadline:
                return operation  # more next time
        operation.state = BulkOperation.State.DONE
        operation.message = f"{operation.changed} of {operation.processed} changed"
    except Exception as exc:
        logger.exception("bulk operation %s failed", operation.pk)
        operation.state = BulkOperation.State.FAILED
        operation.message = f"{type(exc).__name__}: {exc}"[:1000]
    operation.finished_at = timezone.now()
    operation.save(update_fields=["state", "message", "finished_at"])
    return operation


def bulk_operations_advance(*, budget_seconds: float = 1.0) -> dict[str, int]:
    """Run by beat: advance the pending operations, oldest first, within a time budget so
    the reconciler beside it is never held up for long."""
    deadline = time.monotonic() + budget_seconds
    advanced = 0
    for pk in (
        BulkOperation.objects.filter(state__in=[BulkOperation.State.PENDING, BulkOperation.State.RUNNING])
        .order_by("created_at")
        .values_list("pk", flat=True)[:10]
    ):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        bulk_operation_run(operation_id=pk, budget_seconds=remaining)
        advanced += 1
    return {"advanced": advanced}

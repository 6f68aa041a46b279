"""Pruning, run by beat every PRUNE_INTERVAL_SECONDS: expired idempotency keys, finished
jobs (with their attempts and steps) past their retention, and what the layers above
register (the dead letters prune their resolved letters, and keep a job with an open letter
from being pruned). Each step deletes in small batches by primary key, so no statement locks a table for long.

A batch's ids are read first and deleted after, and a row may change in between: a failed
job redriven, a retried one queued again. So the DELETE carries the conditions that made the
row prunable, not only its id, and PostgreSQL checks them again on the row's latest version
as it deletes it (waiting for a concurrent change to commit first): a job that stopped
qualifying is left alone, never deleted half-way through being run again."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections, models, transaction
from django.db.models import QuerySet, sql
from django.utils import timezone

from apps.jobs.lifecycle import idempotency_keys_prune
from apps.jobs.models import TERMINAL_STATUSES, Job

logger = logging.getLogger(__name__)

# Conditions (expressions on a Job row, such as Exists(...OuterRef("pk")...)) under which a
# finished job is kept past its retention; registered by the layers above.
_keep_conditions: list[Callable[[], Any]] = []
# (name, prune(now=, batch=) -> rows deleted), run after the jobs, in registration order.
_pruners: list[tuple[str, Callable[..., int]]] = []


def job_keep_while(condition: Callable[[], Any]) -> None:
    """Never prune a finished job while `condition()` holds for it (an AppConfig.ready calls
    this; the dead letters keep a job whose letter is open)."""
    if condition not in _keep_conditions:
        _keep_conditions.append(condition)


def pruner_register(name: str, prune_step: Callable[..., int]) -> None:
    """Run `prune_step(now=..., batch=...)` in every pruning sweep, its figure under `name`."""
    if all(existing != name for existing, _ in _pruners):
        _pruners.append((name, prune_step))


def _prunable_jobs(cutoff: datetime) -> QuerySet[Job]:
    """Finished before `cutoff`, and kept by no layer above (an open dead letter waits for staff)."""
    jobs = Job.objects.filter(status__in=TERMINAL_STATUSES, finished_at__lt=cutoff)
    for condition in _keep_conditions:
        jobs = jobs.exclude(condition())
    return jobs


def _job_ids_to_prune(cutoff: datetime, batch: int) -> list[Any]:
    return list(_prunable_jobs(cutoff).values_list("pk", flat=True)[:batch])


def jobs_prune_finished(*, now: datetime, batch: int, max_batches: int = 20) -> int:
    """Finished jobs older than JOB_RETENTION_DAYS; never one a layer above keeps."""
    cutoff = now - timedelta(days=settings.JOB_RETENTION_DAYS)
    deleted = 0
    for _ in range(max_batches):
        ids = _job_ids_to_prune(cutoff, batch)
        if not ids:
            break
        # An id that stopped qualifying is not deleted, and is not selected again either.
        deleted += delete_where(_prunable_jobs(cutoff).filter(pk__in=ids))
    return deleted


def delete_where(queryset: QuerySet[Any]) -> int:
    """Delete the rows `queryset` selects with one DELETE whose WHERE is the queryset's own,
    then what references them. Returns how many of the queryset's rows were deleted.

    QuerySet.delete() would not do: it selects the rows, then deletes them by primary key
    alone, which is the very gap this closes. The rows that reference the deleted ones
    (attempts, steps, letters) go in the same transaction, after them: Django's foreign keys
    are DEFERRABLE INITIALLY DEFERRED, checked at the commit."""
    model = queryset.model
    compiled, params = queryset.query.chain(sql.DeleteQuery).get_compiler(queryset.db).as_sql()
    pk = model._meta.pk
    assert pk is not None
    connection = connections[queryset.db]
    with transaction.atomic(using=queryset.db):
        with connection.cursor() as cursor:
            # RETURNING: PostgreSQL, and SQLite since 3.35.
            cursor.execute(f"{compiled} RETURNING {connection.ops.quote_name(pk.column)}", params)
            gone = [pk.to_python(row[0]) for row in cursor.fetchall()]
        if gone:
            _delete_dependents(model, gone)
    return len(gone)


def _delete_dependents(model: type[models.Model], ids: list[Any]) -> None:
    """Apply each reverse foreign key's on_delete to the rows of `ids`, as Model.delete()
    would; each dependent's own dependents follow through its QuerySet.delete()."""
    for relation in model._meta.get_fields(include_hidden=True):
        if not (relation.auto_created and not relation.concrete and (relation.one_to_many or relation.one_to_one)):
            continue
        on_delete = relation.on_delete  # type: ignore[union-attr]
        dependents = relation.related_model._base_manager.filter(  # type: ignore[union-attr]
            **{f"{relation.field.name}__in": ids}  # type: ignore[union-attr]
        )
        if on_delete is models.CASCADE:
            dependents.delete()
        elif on_delete is models.SET_NULL:
            dependents.update(**{relation.field.name: None})  # type: ignore[union-attr]
        elif on_delete is not models.DO_NOTHING:
            # PROTECT, RESTRICT, SET_DEFAULT, SET(...): decide here before pruning such rows.
            raise NotImplementedError(f"pruning {model.__name__}: {relation} has on_delete={on_delete.__name__}")


def prune(*, now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    batch = settings.PRUNE_BATCH_SIZE
    figures = {
        "idempotency_keys": idempotency_keys_prune(now=now, batch=batch),
        "jobs": jobs_prune_finished(now=now, batch=batch),
    }
    for name, prune_step in _pruners:
        figures[name] = prune_step(now=now, batch=batch)
    if any(figures.values()):
        logger.info("pruned %s", figures)
    return figures

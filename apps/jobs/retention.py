"""Pruning, run by beat every PRUNE_INTERVAL_SECONDS: expired idempotency keys, finished
jobs (with their attempts and steps) and resolved dead letters past their retention. Each
step deletes in small batches by primary key, so no statement locks a table for long.

A batch's ids are read first and deleted after, and a row may change in between: a failed
job redriven, a retried one queued again. So the DELETE carries the conditions that made the
row prunable, not only its id, and PostgreSQL checks them again on the row's latest version
as it deletes it (waiting for a concurrent change to commit first): a job that stopped
qualifying is left alone, never deleted half-way through being run again."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connections, models, transaction
from django.db.models import Exists, OuterRef, QuerySet, sql
from django.utils import timezone

from apps.deadletters.models import DeadLetter
from apps.jobs.models import TERMINAL_STATUSES, Job
from apps.jobs.services import idempotency_keys_prune

logger = logging.getLogger(__name__)


def _prunable_jobs(cutoff: datetime) -> QuerySet[Job]:
    """Finished before `cutoff`, and no open dead letter (that one waits for staff)."""
    open_letter = DeadLetter.objects.filter(job_id=OuterRef("pk"), state=DeadLetter.State.OPEN)
    return Job.objects.filter(status__in=TERMINAL_STATUSES, finished_at__lt=cutoff).exclude(Exists(open_letter))


def _prunable_letters(cutoff: datetime) -> QuerySet[DeadLetter]:
    """Redriven or discarded before `cutoff`."""
    return DeadLetter.objects.exclude(state=DeadLetter.State.OPEN).filter(resolved_at__lt=cutoff)


def _job_ids_to_prune(cutoff: datetime, batch: int) -> list[Any]:
    return list(_prunable_jobs(cutoff).values_list("pk", flat=True)[:batch])


def _letter_ids_to_prune(cutoff: datetime, batch: int) -> list[Any]:
    return list(_prunable_letters(cutoff).values_list("pk", flat=True)[:batch])


def jobs_prune_finished(*, now: datetime, batch: int, max_batches: int = 20) -> int:
    """Finished jobs older than JOB_RETENTION_DAYS; never one with an open dead letter."""
    cutoff = now - timedelta(days=settings.JOB_RETENTION_DAYS)
    deleted = 0
    for _ in range(max_batches):
        ids = _job_ids_to_prune(cutoff, batch)
        if not ids:
            break
        # An id that stopped qualifying is not deleted, and is not selected again either.
        deleted += _delete_where(_prunable_jobs(cutoff).filter(pk__in=ids))
    return deleted


def dead_letters_prune_resolved(*, now: datetime, batch: int) -> int:
    """Redriven or discarded letters older than DEAD_LETTER_RETENTION_DAYS."""
    cutoff = now - timedelta(days=settings.DEAD_LETTER_RETENTION_DAYS)
    ids = _letter_ids_to_prune(cutoff, batch)
    return _delete_where(_prunable_letters(cutoff).filter(pk__in=ids)) if ids else 0


def _delete_where(queryset: QuerySet[Any]) -> int:
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
        "dead_letters": dead_letters_prune_resolved(now=now, batch=batch),
    }
    if any(figures.values()):
        logger.info("pruned %s", figures)
    return figures

"""The workflows' part of pruning (registered with apps.jobs.retention in
WorkflowsConfig.ready): a finished job of a running workflow is kept (its dependents read
its result, a redrive re-opens through its graph), and a finished workflow goes after the
jobs' retention, its graph with it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, QuerySet

from apps.jobs.retention import delete_where
from apps.workflows.models import Workflow, WorkflowStatus


def job_in_running_workflow() -> Exists:
    """On a Job row: it belongs to a workflow that is still running."""
    return Exists(Workflow.objects.filter(id=OuterRef("workflow_id"), status=WorkflowStatus.RUNNING))


def _prunable(cutoff: datetime) -> QuerySet[Workflow]:
    return Workflow.objects.exclude(status=WorkflowStatus.RUNNING).filter(finished_at__lt=cutoff)


def workflows_prune_finished(*, now: datetime, batch: int) -> int:
    """Workflows that ended more than JOB_RETENTION_DAYS ago, with their nodes."""
    cutoff = now - timedelta(days=settings.JOB_RETENTION_DAYS)
    ids: list[Any] = list(_prunable(cutoff).values_list("pk", flat=True)[:batch])
    return delete_where(_prunable(cutoff).filter(pk__in=ids)) if ids else 0

"""Count job events for /metrics from the jobs app's signals."""

from __future__ import annotations

from typing import Any

from apps.jobs import signals
from apps.ops import metrics


def on_submitted(sender: Any, jobs: list, **kwargs: Any) -> None:
    metrics.count_job_events("submitted", (job.kind for job in jobs))


def on_finished(sender: Any, kind: str, status: str, duration_ms: int | None = None, **kwargs: Any) -> None:
    metrics.count_job_event(status, kind)


def on_retried(sender: Any, kind: str, **kwargs: Any) -> None:
    metrics.count_job_event("retried", kind)


def on_dead_lettered(sender: Any, kind: str, **kwargs: Any) -> None:
    metrics.count_job_event("dead_lettered", kind)


def on_workflow_finished(sender: Any, status: str, **kwargs: Any) -> None:
    metrics.count_workflow_finished(status)


def connect() -> None:
    from apps.workflows.signals import workflow_finished

    workflow_finished.connect(on_workflow_finished, dispatch_uid="ops.metrics.workflow_finished")
    signals.jobs_submitted.connect(on_submitted, dispatch_uid="ops.metrics.submitted")
    signals.job_finished.connect(on_finished, dispatch_uid="ops.metrics.finished")
    signals.job_retried.connect(on_retried, dispatch_uid="ops.metrics.retried")
    signals.job_dead_lettered.connect(on_dead_lettered, dispatch_uid="ops.metrics.dead_lettered")

"""The job on its spans, when tracing is on (apps.core.telemetry): the request span that
submits a job gets its id and kind, the span of the attempt that runs it its id, kind and
attempt number. `follow_jobs` connects the receivers, and JobsConfig.ready asks telemetry to
call it only once tracing is on: off, the signals have no receiver more and cost nothing."""

from __future__ import annotations

import logging
from typing import Any

from apps.core import context, telemetry
from apps.jobs import signals

logger = logging.getLogger("apps.core.telemetry")

IDS_MAX = 100  # job ids named on a batch's request span


def follow_jobs() -> None:
    """Put the job's id and kind on the request span that submits it and on the span of the
    attempt that runs it. Connected only when tracing is on: off, the signals cost nothing."""
    signals.jobs_submitted.connect(_on_submitted, dispatch_uid="telemetry.submitted", weak=False)
    signals.job_started.connect(_on_started, dispatch_uid="telemetry.started", weak=False)


def _on_submitted(jobs: list[Any], **kwargs: Any) -> None:
    # Sent after the submission's commit, on the request's path: tracing must never fail it.
    try:
        _label_request(jobs)
    except Exception:
        logger.warning("tracing: could not label the request with its jobs", exc_info=True)


def _label_request(jobs: list[Any]) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    span = trace.get_current_span()
    # Only a request's span: a job submitted from inside another job's attempt (a webhook
    # delivery, say) must not relabel that attempt.
    if not jobs or not span.is_recording() or getattr(span, "kind", None) is not SpanKind.SERVER:
        return
    if len(jobs) == 1:
        span.set_attributes({"job.id": str(jobs[0].id), "job.kind": jobs[0].kind})
    else:
        # A batch of 1,000 would make a span of 37 kB; backends cap attributes well below.
        span.set_attributes({"job.count": len(jobs), "job.ids": [str(job.id) for job in jobs[:IDS_MAX]]})
    # Kept now, not only at the publish: a job held back (a paused queue, a full window) is
    # published later, elsewhere, and must still find the request that submitted it.
    from opentelemetry import propagate

    request_id = context.request_id.get()
    if request_id and any(job.request_id == request_id for job in jobs):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        telemetry.remember_request_context(request_id, carrier)


def _on_started(job_id: str, kind: str, attempt: int, **kwargs: Any) -> None:
    """A worker claimed the job: the current span is its attempt's (Celery's run/<kind>)."""
    try:
        _label_attempt(job_id, kind, attempt)
    except Exception:  # the attempt runs whatever tracing thinks
        logger.warning("tracing: could not label job %s's attempt", job_id, exc_info=True)


def _label_attempt(job_id: str, kind: str, attempt: int) -> None:
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({"job.id": job_id, "job.kind": kind, "job.attempt": attempt})

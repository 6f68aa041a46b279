"""Who and what a log line is about: the request id, and the job and kind a worker runs.
Set by the request-id middleware and the worker runtime; read by the JSON log formatter."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
job_id: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="")
job_kind: contextvars.ContextVar[str] = contextvars.ContextVar("job_kind", default="")


@contextmanager
def job_context(*, job: str, kind: str, request: str = "") -> Iterator[None]:
    tokens = [(request_id, request_id.set(request)), (job_id, job_id.set(job)), (job_kind, job_kind.set(kind))]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)

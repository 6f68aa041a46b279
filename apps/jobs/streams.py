"""A job's changes as server-sent events (`GET /api/v1/jobs/{id}/events`): the job as the
poll shows it, sent at once and again each time it changes, woken by the same Redis doorbell
as the long poll (apps.jobs.polling) and bounded like it.

The stream, in the text/event-stream format (https://html.spec.whatwg.org/#server-sent-events):

    retry: 1000                       reconnect after a second when the stream ends

    event: job                        the job's JSON, as GET /api/v1/jobs/{id} answers it, at
                                      once, at each change and within a second of its progress
    id: W/"<its ETag>"                what the client sends back as Last-Event-ID
    data: {...}

    event: end                        the job has finished: nothing more will come
    data: {}

A stream lasts at most `?wait` seconds (default and most: notify.WAIT_MAX_SECONDS). A client
that reconnects with Last-Event-ID (EventSource does by itself) gets the job at once only if
it changed since that event."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from rest_framework.request import Request

from apps.jobs import notify, polling, selectors
from apps.jobs.serializers import JOB_FIELD_MAX_CHARS, JobDetailOutput

RECONNECT_MILLISECONDS = 1000
PROGRESS_LOOK_SECONDS = 1.0


def _event(name: str, data: Any, event_id: str | None = None) -> bytes:
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    # Compact JSON has no newline, so the whole document is one data line.
    lines.append("data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False))
    return ("\n".join(lines) + "\n\n").encode()


def job_event_stream(request: Request, *, job_id: object) -> Iterator[bytes]:
    """The stream's events. Checks the job (404) and `?wait` (400) before the first byte, so
    an error is an ordinary JSON answer; call it, then hand the iterator to the response."""
    raw = request.query_params.get("wait")
    seconds = polling.wait_seconds(raw) if raw not in (None, "") else float(notify.WAIT_MAX_SECONDS)
    last = request.headers.get("Last-Event-ID", "").strip()
    seen = {last.removeprefix("W/")} if last else set()
    version = polling.job_version(owner=request.user, job_id=job_id)
    return _events(request, job_id=job_id, seconds=seconds, seen=seen, first=version)


def _events(
    request: Request, *, job_id: object, seconds: float, seen: set[str], first: polling.JobVersion
) -> Iterator[bytes]:
    deadline = time.monotonic() + seconds
    yield f"retry: {RECONNECT_MILLISECONDS}\n\n".encode()
    version = first
    while True:
        if not polling.matches(seen, version.etag):
            job = selectors.job_get(owner=request.user, job_id=job_id, max_json_chars=JOB_FIELD_MAX_CHARS)
            version = polling.JobVersion.of(job)
            yield _event("job", JobDetailOutput(job, context={"request": request}).data, version.etag)
            seen = {version.etag.removeprefix("W/")}
        if version.terminal:
            yield _event("end", {})
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        # Until the job differs from the one last sent, it ends, or a second passes: progress
        # (ctx.progress) moves the job without ringing its doorbell, so a stream looks again
        # every PROGRESS_LOOK_SECONDS (one narrow read) to show it.
        step = min(remaining, PROGRESS_LOOK_SECONDS)
        waited_from = time.monotonic()
        version = polling.wait_for_change(owner=request.user, job_id=job_id, seconds=step, tags=seen)
        if (
            polling.matches(seen, version.etag)
            and not version.terminal
            and time.monotonic() - waited_from < step - 0.05
        ):
            # Back early with nothing new: this process could not wait (its waiting slots are
            # all taken, notify.JobWaiter). End here; the client reconnects after `retry`.
            return

"""A job's changes as server-sent events (GET /api/v1/jobs/{id}/events): the job at once and
at each change, woken by the same doorbell as the long poll, `end` when it finishes, bounded
in time, resumable with Last-Event-ID; errors as JSON before the first byte."""

from __future__ import annotations

import json
import time
from typing import Any

from django.utils import timezone

from apps.jobs import notify
from apps.jobs.models import Job, JobStatus
from tests.factories import JobFactory, UserFactory
from tests.unit.jobs.test_polling import client_for, later, touch

JOBS = "/api/v1/jobs"


def parse(chunks: Any) -> tuple[list[dict[str, Any]], str]:
    """The events of a stream, each {"event", "id", "data"}, and the stream's raw text."""
    text = b"".join(chunks).decode()
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            fields[name] = value
        if "event" in fields:
            fields["data"] = json.loads(fields["data"])
            events.append(fields)
    return events, text


def stream(api: Any, job: Job, params: dict | None = None, **extra: Any) -> tuple[Any, list[dict[str, Any]], str]:
    response = api.get(f"{JOBS}/{job.id}/events", params or {}, HTTP_ACCEPT="text/event-stream", **extra)
    events, text = parse(response.streaming_content) if response.streaming else ([], "")
    return response, events, text


def test_a_finished_job_streams_itself_then_end_and_closes(transactional_db):
    user = UserFactory()
    job = JobFactory(owner=user, status=JobStatus.SUCCEEDED, finished_at=timezone.now(), result={"answer": 42})
    api = client_for(user)

    started = time.monotonic()
    response, events, text = stream(api, job)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response["Cache-Control"] == "no-cache"
    assert text.startswith("retry: 1000\n\n")
    assert [e["event"] for e in events] == ["job", "end"]
    poll = api.get(f"{JOBS}/{job.id}")
    assert events[0]["data"] == poll.json()  # the job as the poll shows it
    assert events[0]["id"] == poll["ETag"]
    assert time.monotonic() - started < 5  # not held for the stream's whole bound


def test_a_stream_sends_each_change_as_it_happens_and_ends_when_the_job_finishes(transactional_db):
    user = UserFactory()
    job = JobFactory(owner=user, status=JobStatus.QUEUED)
    api = client_for(user)

    def run_then_finish() -> None:
        touch(job, status=JobStatus.RUNNING, started_at=timezone.now(), attempts=1)
        notify.job_changed_publish(job.id)
        time.sleep(0.3)
        touch(job, status=JobStatus.SUCCEEDED, finished_at=timezone.now(), result={"done": True})
        notify.job_changed_publish(job.id)

    thread = later(0.3, run_then_finish)
    started = time.monotonic()
    response, events, _ = stream(api, job, {"wait": "20"})
    assert response.status_code == 200
    thread.join(5)

    assert [e["event"] for e in events] == ["job", "job", "job", "end"]
    assert [e["data"]["status"] for e in events[:3]] == ["queued", "running", "succeeded"]
    assert events[2]["data"]["result"] == {"done": True}
    assert len({e["id"] for e in events[:3]}) == 3
    assert time.monotonic() - started < 10  # woken by the doorbell, not at the 20 s bound


def test_a_stream_resumed_with_the_last_event_id_sends_nothing_old_and_ends_at_its_bound(transactional_db):
    user = UserFactory()
    job = JobFactory(owner=user, status=JobStatus.RUNNING)
    api = client_for(user)
    etag = api.get(f"{JOBS}/{job.id}")["ETag"]

    started = time.monotonic()
    response, events, text = stream(api, job, {"wait": "1"}, HTTP_LAST_EVENT_ID=etag)

    assert response.status_code == 200
    assert events == []
    assert text == "retry: 1000\n\n"
    assert 0.9 < time.monotonic() - started < 10  # held for the second asked, then closed


def test_another_clients_job_and_a_bad_wait_are_json_errors_before_any_event(transactional_db):
    job = JobFactory(owner=UserFactory(), status=JobStatus.RUNNING)
    stranger = client_for(UserFactory())
    owner = client_for(job.owner)

    missing = stranger.get(f"{JOBS}/{job.id}/events", HTTP_ACCEPT="text/event-stream")
    bad_wait = owner.get(f"{JOBS}/{job.id}/events", {"wait": "31"}, HTTP_ACCEPT="text/event-stream")

    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "job_not_found")
    assert (bad_wait.status_code, bad_wait.json()["error"]["code"]) == (400, "invalid_wait")
    assert notify.WAIT_MAX_SECONDS == 30


def test_a_stream_shows_progress_which_rings_no_doorbell_within_a_second_or_so(transactional_db):
    user = UserFactory()
    job = JobFactory(owner=user, status=JobStatus.RUNNING, attempts=1)
    api = client_for(user)

    thread = later(0.3, lambda: touch(job, progress_percent=40.0, progress_message="four of ten"))
    response, events, _ = stream(api, job, {"wait": "3"})
    thread.join(5)

    assert response.status_code == 200
    assert [e["data"]["progress"] for e in events] == [
        {"percent": None, "message": ""},
        {"percent": 40.0, "message": "four of ten"},
    ]

"""The worker's task events, as Flower and every Celery event receiver read them: each job's
received, started and succeeded events all arrive, a few jobs' worth per message
(workers.consumer), and a worker stopping right after its last job still sends that job's."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from django.contrib.auth import get_user_model

from apps.jobs.lifecycle import job_submit
from tests.integration.helpers import wait_terminal
from tests.processes import wait_for

pytestmark = pytest.mark.integration

TASK_EVENTS = {"task-received", "task-started", "task-succeeded"}


class EventTap:
    """Every message on the events exchange (kombu's Redis fanout: PUBLISH on the exchange's
    channels), decoded as a receiver decodes it: a message holds one event or a list."""

    def __init__(self, url: str) -> None:
        self.messages: list[list[dict]] = []
        self._pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self._pubsub.psubscribe("*celeryev*")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.1)
            if message and message["type"] == "pmessage":
                envelope = json.loads(message["data"])
                body = envelope["body"]
                if envelope.get("properties", {}).get("body_encoding") == "base64":
                    body = base64.b64decode(body)
                events = json.loads(body)
                self.messages.append(events if isinstance(events, list) else [events])

    def task_events(self) -> Iterator[dict]:
        for events in list(self.messages):
            yield from (e for e in events if e.get("type") in TASK_EVENTS)

    def seen(self, job_ids: list[str], event_type: str) -> set[str]:
        return {e["uuid"] for e in self.task_events() if e["type"] == event_type} & set(job_ids)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()


@pytest.fixture
def tap(platform):
    tap = EventTap(platform.redis.url)
    yield tap
    tap.close()


def test_every_jobs_task_events_arrive_several_jobs_to_a_message(platform, tap):
    owner = get_user_model().objects.create(username="events-client")
    platform.worker()
    time.sleep(0.5)  # the tap hears only what is published after it subscribed
    ids = [str(job_submit(owner=owner, kind="diagnostics.noop", payload={}).id) for _ in range(60)]
    wait_terminal(ids, timeout=60)
    for event_type in sorted(TASK_EVENTS):
        wait_for(lambda t=event_type: tap.seen(ids, t) == set(ids), timeout=10, what=f"every job's {event_type}")
    carrying = [events for events in tap.messages if any(e.get("type") in TASK_EVENTS for e in events)]
    # 180 task events; sent one loop turn at a time they took about one message each.
    assert len(carrying) < 180 / 3, f"{len(carrying)} messages for 180 task events"
    # In order, job by job: a receiver builds each task's state from them.
    order = {(e["uuid"], e["type"]): i for i, e in enumerate(tap.task_events())}
    for job_id in ids:
        assert order[(job_id, "task-received")] < order[(job_id, "task-started")] < order[(job_id, "task-succeeded")]


def test_a_worker_stopping_right_after_its_last_job_still_sends_that_jobs_events(platform, tap):
    owner = get_user_model().objects.create(username="events-stop-client")
    # Events gathered for 30 s: only the shutdown can have sent them within the test's wait.
    worker = platform.worker(env={"WORKER_EVENTS_FLUSH_SECONDS": "30"})
    time.sleep(0.5)
    ids = [str(job_submit(owner=owner, kind="diagnostics.noop", payload={}).id) for _ in range(3)]
    wait_terminal(ids, timeout=30)
    worker.stop()  # a warm shutdown, at once: the last events may still wait in the buffer
    wait_for(lambda: tap.seen(ids, "task-succeeded") == set(ids), timeout=10, what="the last jobs' task-succeeded")

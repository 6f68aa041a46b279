"""Fair dispatch with a real worker, two beats, PostgreSQL and Redis (guarantee 12): one
client's backlog waits in PostgreSQL behind a bounded window, so another client's jobs of the
same queue run long before that backlog drains, and every job of both runs exactly once."""

from __future__ import annotations

import threading

import pytest
from django.db import connections

from apps.core.redis import redis_client
from apps.jobs import lifecycle
from apps.jobs.flow import window_key
from apps.jobs.models import Job, JobAttempt, JobStatus
from tests.factories import UserFactory
from tests.integration.helpers import wait_terminal
from tests.processes import wait_for

pytestmark = pytest.mark.integration

BACKLOG = 3000
WINDOW_MAX = 200


class QueueWatch:
    """Samples the queue's length in Redis on a thread while the test runs."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.longest = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> QueueWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        client = redis_client()
        while not self._stop.wait(0.02):
            self.longest = max(self.longest, int(client.llen(self.queue)))


def test_a_small_clients_jobs_run_long_before_another_clients_backlog_drains(platform):
    env = {"DISPATCH_WINDOW_MAX": str(WINDOW_MAX)}
    platform.worker(env=env)
    platform.beat(**env)
    platform.beat(**env)
    big, small = UserFactory(), UserFactory()
    # Let a leader size the windows first, as on any running platform.
    wait_for(lambda: redis_client().exists(window_key("default")), timeout=30, what="a leader to size the window")

    with QueueWatch("default") as watch:
        backlog = []
        for _ in range(BACKLOG // 1000):
            backlog += lifecycle.job_submit_batch(owner=big, jobs=[{"kind": "diagnostics.noop", "payload": {}}] * 1000)
        mine = [lifecycle.job_submit(owner=small, kind="diagnostics.noop", payload={}) for _ in range(3)]

        wait_terminal([job.id for job in mine], timeout=120)
        big_done_then = Job.objects.filter(owner=big, status=JobStatus.SUCCEEDED).count()

        wait_terminal([job.id for job in backlog], timeout=300)
    connections.close_all()

    # First in, first out, the small client would have waited for all 3,000.
    assert big_done_then < BACKLOG // 2, f"{big_done_then} of the backlog ran before the small client's 3 jobs"
    assert watch.longest <= 2 * WINDOW_MAX, f"the queue held {watch.longest} messages at once"
    everything = [job.id for job in backlog + mine]
    assert Job.objects.filter(id__in=everything, status=JobStatus.SUCCEEDED, attempts=1).count() == len(everything)
    assert JobAttempt.objects.filter(job_id__in=everything).count() == len(everything)

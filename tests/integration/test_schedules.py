"""Schedules fired by real beats (two of them, one leading), run by a real worker: each firing
makes exactly one job, a disabled schedule stops, and a leader killed mid-schedule neither
skips nor doubles a firing."""

from __future__ import annotations

import statistics
import time
from datetime import timedelta
from itertools import pairwise

import pytest
from django.contrib.auth import get_user_model

from apps.jobs.models import Job
from apps.ops.models import ControlLoop
from apps.schedules import services
from apps.schedules.models import Schedule
from tests.integration.helpers import wait_terminal
from tests.processes import wait_for

pytestmark = pytest.mark.integration

# Short leases, so a killed leader is replaced within about 2 s.
FAST_FAILOVER = {"CONTROL_LEASE_SECONDS": "1.5", "CONTROL_ELECTION_INTERVAL_SECONDS": "0.5"}


@pytest.fixture
def owner(transactional_db):
    return get_user_model().objects.create(username="schedule-client")


def fired(schedule: Schedule) -> list[Job]:
    return list(Job.objects.filter(schedule_id=schedule.pk).order_by("scheduled_for"))


def gaps(jobs: list[Job]) -> list[float]:
    return [(b.scheduled_for - a.scheduled_for).total_seconds() for a, b in pairwise(jobs)]


def test_two_beats_fire_each_tick_once_and_a_disabled_schedule_stops(platform, owner):
    platform.worker(concurrency=2)
    platform.beat()
    platform.beat()
    schedule = services.schedule_create(owner=owner, kind="diagnostics.noop", payload={}, every_seconds=1)
    time.sleep(6.5)
    services.schedule_set_enabled(schedule=schedule, enabled=False)
    made = fired(schedule)
    assert 4 <= len(made) <= 8, f"{len(made)} firings in 6.5 s"
    times = [job.scheduled_for for job in made]
    assert len(set(times)) == len(times), "a firing made two jobs"
    assert all(gap == 1.0 for gap in gaps(made)), f"firings were skipped or doubled: gaps {gaps(made)}"
    # The speed goal: each job exists within a second of its time.
    lags = [(job.created_at - job.scheduled_for).total_seconds() for job in made]
    assert min(lags) >= 0
    assert statistics.median(lags) < 1.0, f"lag after the firing's time: {lags}"
    jobs = wait_terminal([job.id for job in made], timeout=30)
    assert {job.status for job in jobs.values()} == {"succeeded"}

    time.sleep(2.5)
    assert len(fired(schedule)) == len(made), "a disabled schedule kept firing"


def test_a_killed_leader_neither_skips_nor_doubles_a_firing(platform, owner):
    platform.worker(concurrency=2)
    first = platform.beat(**FAST_FAILOVER)
    second = platform.beat(**FAST_FAILOVER)
    beats = {first.pid: first, second.pid: second}
    schedule = services.schedule_create(owner=owner, kind="diagnostics.noop", payload={}, every_seconds=3)
    wait_for(lambda: len(fired(schedule)) >= 2, timeout=15, interval=0.2, what="two firings")
    leader = ControlLoop.objects.get(name="beat").leader
    killed = beats[int(leader.rsplit(":", 1)[1])]
    killed_at = time.time()
    killed.kill()
    platform.beat(**FAST_FAILOVER)  # a replacement joins, as a restarted beat would
    wait_for(
        lambda: len([j for j in fired(schedule) if j.created_at.timestamp() > killed_at + 1]) >= 3,
        timeout=30,
        interval=0.2,
        what="three firings after the leader was killed",
    )
    services.schedule_set_enabled(schedule=schedule, enabled=False)
    made = fired(schedule)
    assert ControlLoop.objects.get(name="beat").leader != leader
    times = [job.scheduled_for for job in made]
    assert len(set(times)) == len(times), "a firing made two jobs"
    assert all(gap == 3.0 for gap in gaps(made)), f"a firing was skipped or doubled: gaps {gaps(made)}"
    assert made[-1].scheduled_for - made[0].scheduled_for >= timedelta(seconds=3 * 4)
    jobs = wait_terminal([job.id for job in made], timeout=30)
    assert {job.status for job in jobs.values()} == {"succeeded"}

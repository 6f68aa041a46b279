"""Chaos: every database connection of the platform cut at once (what a PostgreSQL failover
or restart does to its clients), with jobs running, retries waiting for beat, and a backlog."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from tests.chaos.infra import (
    all_finished_at,
    count_status,
    effects,
    exactly_once,
    goal,
    log_lines,
    milestones,
    now,
    report,
    submit_here,
    successful_sweep_after,
    terminate_connections,
)
from tests.conftest import database_url
from tests.processes import wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


def test_every_job_ends_exactly_once_after_all_database_connections_are_cut(platform, stacks):
    db = database_url()
    stack = stacks("db-cut", database_url=db, redis_url=platform.redis.url)
    stack.worker("worker", concurrency=3)
    beat = stack.beat()
    owner = get_user_model().objects.create(username="chaos-db-cut")
    # Two long jobs to be running at the cut, retries that only beat can promote, a backlog.
    ids = submit_here(owner, effects(2, seconds=4) + effects(6, fail_times=1, seconds=0.1) + effects(30, seconds=0.2))

    at_cut = wait_for(
        lambda: (c := count_status(db, ids))["running"] >= 2 and c["retrying"] >= 1 and c,
        timeout=30,
        interval=0.05,
        what="two jobs running and one waiting to retry",
    )
    cut_at = now()
    cut = terminate_connections(db)
    connection.close()  # the test's own connection was cut too

    found = milestones(
        {
            "next_sweep": lambda: successful_sweep_after(db, [beat.log_path], cut_at),
            "all_done": lambda: all_finished_at(db, ids),
        },
        since=cut_at,
        timeout=60,
    )
    report(
        "db-cut",
        jobs=len(ids),
        connections_cut=cut,
        at_cut=dict(at_cut),
        cut_to_next_successful_sweep=found["next_sweep"],
        sweep_goal=goal(found["next_sweep"], 5),
        cut_to_all_done=found["all_done"],
    )

    assert found["next_sweep"] is not None, (
        "no successful reconciler sweep within 60 s of the cut; beat logged:\n"
        + log_lines(beat.log_path, "platform.reconcile", "reconciler step", "connection")
    )
    outcome = exactly_once(db, ids, stack.ledger)
    assert not outcome.problems, outcome.describe()

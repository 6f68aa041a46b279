"""Chaos: PostgreSQL itself stopped (immediate shutdown, as a crash or a failover looks to its
clients) and started again mid-run. The server is the test's own, so stopping it touches no
one else's."""

from __future__ import annotations

import time

import pytest

from tests.chaos.infra import (
    all_finished_at,
    count_status,
    effects,
    exactly_once,
    first_finished_after,
    log_lines,
    milestones,
    now,
    report,
    seconds_between,
    submit,
    successful_sweep_after,
)
from tests.processes import wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

OUTAGE_SECONDS = 3


def test_every_job_ends_exactly_once_after_postgresql_is_stopped_and_started(stacks, own_postgres, private_redis):
    pg = own_postgres()
    redis = private_redis()
    db = pg.url()
    stack = stacks("pg-restart", database_url=db, redis_url=redis.url)
    worker = stack.worker("worker", concurrency=3)
    beat = stack.beat()
    ids = submit(stack.env(), effects(2, seconds=4) + effects(6, fail_times=1, seconds=0.1) + effects(30, seconds=0.2))

    at_stop = wait_for(
        lambda: (c := count_status(db, ids))["running"] >= 2 and c, timeout=30, interval=0.05, what="two jobs running"
    )
    stopped_at = now()
    pg.stop("immediate")
    time.sleep(OUTAGE_SECONDS)  # the outage itself
    pg.start()
    restarted_at = now()

    found = milestones(
        {
            "first_finished": lambda: first_finished_after(db, ids, restarted_at),
            "next_sweep": lambda: successful_sweep_after(db, [beat.log_path], restarted_at),
            "all_done": lambda: all_finished_at(db, ids),
        },
        since=restarted_at,
        timeout=60,
    )
    report(
        "pg-restart",
        jobs=len(ids),
        at_stop=dict(at_stop),
        outage=seconds_between(stopped_at, restarted_at),
        restart_to_first_finished_job=found["first_finished"],
        restart_to_next_successful_sweep=found["next_sweep"],
        restart_to_all_done=found["all_done"],
    )

    assert found["next_sweep"] is not None, (
        "no successful reconciler sweep within 60 s of PostgreSQL's restart; beat logged:\n"
        + log_lines(beat.log_path, "platform.reconcile", "reconciler step", "control loop")
    )
    outcome = exactly_once(db, ids, stack.ledger)
    failed_tasks = worker.log().count("raised unexpected: OperationalError")
    assert not outcome.problems, (
        outcome.describe()
        + f"\nthe worker logged {failed_tasks} task(s) that raised OperationalError (Celery acknowledges"
        + " the message of a task that raised), e.g.:\n"
        + log_lines(worker.log_path, "raised unexpected", last=3)
    )

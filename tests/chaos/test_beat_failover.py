"""Chaos: two beats, the leader killed with kill -9 together with the worker that was running
jobs. The other beat takes the lead (the `ops_controlloop` row names it) and recovery goes on
under it: the dead worker's leases expire into retries, and a failed attempt's retry is
promoted."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.contrib.auth import get_user_model

from tests.chaos.infra import (
    all_finished_at,
    control_loop,
    effects,
    exactly_once,
    goal,
    job_statuses,
    log_entries,
    log_lines,
    milestones,
    now,
    query,
    report,
    submit_here,
)
from tests.chaos.servers import kill_group
from tests.conftest import database_url
from tests.processes import wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.integration]


def test_the_other_beat_takes_the_lead_when_the_leader_is_killed_and_recovery_goes_on(platform, stacks):
    db = database_url()
    stack = stacks("beat-failover", database_url=db, redis_url=platform.redis.url)
    first_worker = stack.worker("worker-a", concurrency=2)
    beats = {b.pid: b for b in (stack.beat("beat-a"), stack.beat("beat-b"))}

    def elected():
        row = control_loop(db)
        return row if row is not None and row.leader_pid in beats else None

    try:
        before = wait_for(elected, timeout=30, what="one of the two beats to lead")
    except AssertionError:
        raise AssertionError(
            f"no beat leads: the ops_controlloop row 'beat' is {control_loop(db)} (leader election deployed?); "
            + "the beats logged:\n"
            + "\n".join(log_lines(b.log_path, "control loop") for b in beats.values())
        ) from None
    leader = beats[before.leader_pid]
    [follower] = [b for pid, b in beats.items() if pid != before.leader_pid]

    owner = get_user_model().objects.create(username="chaos-beat-failover")
    long_jobs = submit_here(owner, effects(2, seconds=8))
    wait_for(
        lambda: set((job_statuses(db, long_jobs) or {}).values()) == {"running"},
        timeout=30,
        what="the long jobs running on the first worker",
    )

    killed_at = now()
    kill_group(leader)  # kill -9, no resignation: the lease must run out
    kill_group(first_worker)  # its jobs' leases must be expired by the next leader
    stack.worker("worker-b", concurrency=2)
    # Fail once on the new worker; only a leading beat promotes the retry.
    retried = submit_here(owner, effects(3, fail_times=1, seconds=0.1))
    ids = long_jobs + retried

    def taken_over() -> datetime | None:
        row = control_loop(db)
        return now() if row is not None and row.leader_pid == follower.pid else None

    found = milestones(
        {"failover": taken_over, "all_done": lambda: all_finished_at(db, ids)}, since=killed_at, timeout=60
    )
    after = control_loop(db)
    report(
        "beat-failover",
        jobs=len(ids),
        killed_leader=before.leader,
        new_leader=after.leader if after else None,
        epochs=f"{before.epoch}->{after.epoch if after else '?'}",
        kill_to_new_leader=found["failover"],
        failover_goal=goal(found["failover"], 10),
        kill_to_all_done=found["all_done"],
    )

    assert found["failover"] is not None, (
        f"the other beat never took the lead; the row is {after}; it logged:\n"
        + log_lines(follower.log_path, "control loop")
    )
    assert after.epoch > before.epoch
    # One beat runs the loop: the follower swept nothing before it took the lead.
    entries = log_entries(follower.log_path)
    led = [e["time"] for e in entries if "control loop: leading" in e.get("message", "")]
    assert led, "the row names the follower, but it never logged that it leads"
    early = [e["message"] for e in entries if e["message"].startswith("platform.reconcile:") and e["time"] < led[0]]
    assert not early, f"the follower swept before it led: {early[:3]}"
    outcome = exactly_once(db, ids, stack.ledger)
    assert not outcome.problems, outcome.describe()
    lost = query(
        db,
        "SELECT count(*) FROM jobs_jobattempt WHERE job_id = ANY(%s::uuid[]) AND outcome = 'lost' AND worker LIKE %s",
        [long_jobs, "chaos-beat-failover-worker-a@%"],
    )[0][0]
    assert lost == 2, f"the killed worker's two attempts should be recorded lost, found {lost}"

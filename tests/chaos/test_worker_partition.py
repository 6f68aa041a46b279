"""Chaos: a worker host cut off from Redis and PostgreSQL for longer than its lease, then
reconnected. The worker runs in a network namespace of its own, joined to this machine by a
veth pair; the test's own PostgreSQL and Redis listen on the pair's host end (the machine's
own listen on loopback only), so the worker's traffic stays on that pair, and the cut is the
namespace's end of it going down."""

from __future__ import annotations

import os
from datetime import datetime

import pytest

from tests.chaos.infra import (
    effects,
    exactly_once,
    log_entries,
    log_lines,
    milestones,
    now,
    query,
    report,
    seconds_between,
    submit,
    try_query,
)
from tests.processes import wait_for

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

WORK_SECONDS = 6  # long enough to be cut off mid-job, short enough to end while cut off


def test_a_worker_cut_off_past_its_lease_loses_its_job_once_and_its_late_finish_is_refused(
    stacks, own_postgres, private_redis, partition
):
    net = partition()
    pg = own_postgres(listen=["127.0.0.1", net.host_ip], trusted=[f"{net.ns_ip}/32"])
    redis = private_redis(bind=["127.0.0.1", net.host_ip])
    assert net.reaches(pg.port), "the namespace cannot reach PostgreSQL"
    assert net.reaches(redis.port), "the namespace cannot reach Redis"
    db = pg.url()
    stack = stacks("partition", database_url=db, redis_url=redis.url)
    cut_off = stack.worker(
        "cut-off",
        concurrency=1,
        prefix=net.prefix,
        DATABASE_URL=pg.url(host=net.host_ip),
        REDIS_URL=redis.url_for(net.host_ip),
    )
    beat = stack.beat()
    [job] = submit(stack.env(), effects(1, seconds=WORK_SECONDS))

    def state() -> tuple[str, int, str] | None:
        rows = try_query(db, "SELECT status, attempts, worker FROM jobs_job WHERE id = %s", [job])
        return rows[0] if rows else None

    wait_for(
        lambda: (s := state()) and s[0] == "running" and s[2].startswith("chaos-partition-cut-off@"),
        timeout=30,
        interval=0.05,
        what="the job running on the worker in the namespace",
    )
    wait_for(lambda: "attempt 1 of" in cut_off.log(), timeout=10, what="the handler to start")
    cut_at = now()
    net.cut()
    host = stack.worker("host", concurrency=1)  # only now: the job can run nowhere else before the cut

    def attempt_finished(number: int, outcome: str):
        def check() -> datetime | None:
            rows = try_query(
                db,
                "SELECT finished_at FROM jobs_jobattempt WHERE job_id = %s AND number = %s AND outcome = %s",
                [job, number, outcome],
            )
            return rows[0][0] if rows else None

        return check

    during = milestones(
        {"lease_expired": attempt_finished(1, "lost"), "succeeded_elsewhere": attempt_finished(2, "succeeded")},
        since=cut_at,
        timeout=60,
    )
    healed_at = now()
    net.heal()

    def refused() -> datetime | None:
        for entry in log_entries(cut_off.log_path):
            if "finished after losing its lease" in entry.get("message", "") and entry.get("job_id") == job:
                return datetime.fromisoformat(entry["time"])
        return None

    after = milestones({"late_finish_refused": refused}, since=healed_at, timeout=60)
    report(
        "worker-partition",
        lease_seconds=4,
        cut_to_lease_expired=during["lease_expired"],
        cut_to_succeeded_on_host=during["succeeded_elsewhere"],
        partition_lasted=seconds_between(cut_at, healed_at),
        heal_to_late_finish_refused=after["late_finish_refused"],
    )

    attempts = query(db, "SELECT number, outcome, worker FROM jobs_jobattempt WHERE job_id = %s ORDER BY number", [job])
    assert during["lease_expired"] is not None, f"the cut-off attempt's lease never expired: {attempts}; beat:\n" + (
        log_lines(beat.log_path, "lease expired", "reconciler step")
    )
    assert during["succeeded_elsewhere"] is not None, f"the job never ran again on the host: {attempts}; host:\n" + (
        log_lines(host.log_path, job)
    )
    assert after["late_finish_refused"] is not None, "the cut-off attempt never reported its refused finish:\n" + (
        log_lines(cut_off.log_path, job, "lease", last=10)
    )
    assert [(n, o) for n, o, _ in attempts] == [(1, "lost"), (2, "succeeded")], attempts
    assert attempts[0][2].startswith("chaos-partition-cut-off@")
    assert attempts[1][2].startswith("chaos-partition-host@")
    outcome = exactly_once(db, [job], stack.ledger)
    assert not outcome.problems, outcome.describe()

"""Benchmark 6, crash recovery: kill -9 a worker running jobs, then time until they run again."""

from __future__ import annotations

import signal
import time

from bench.benchmarks import Sizes
from bench.report import Report
from bench.stack import BenchError, Stack

# --- 6. crash recovery ------------------------------------------------------------------------


def recovery(stack: Stack, report: Report, sizes: Sizes) -> None:
    worker = stack.start_worker()
    stack.wait_idle(120)
    count = stack.worker_concurrency
    ids = [stack.submit("diagnostics.sleep", {"seconds": sizes.recovery_sleep})["id"] for _ in range(count)]

    def running(attempt: int) -> bool:
        rows = stack.sql(
            "SELECT count(*) FROM jobs_job WHERE id = ANY(%s::uuid[]) AND status = 'running' AND attempts >= %s",
            [ids, attempt],
        )
        return rows[0][0] == len(ids)

    Stack._wait(lambda: running(1), 60, "the diagnostics.sleep jobs did not start")
    time.sleep(1.0)
    killed = time.time()
    stack.stop(worker, sig=signal.SIGKILL)  # kill -9, the whole process group
    stack.start_worker(warm=False)  # the fresh worker
    try:
        Stack._wait(lambda: running(2), 180, "the jobs were not running again", interval=0.05)
        seen = time.time() - killed
        rows = stack.sql(
            "SELECT j.started_at, a.finished_at FROM jobs_job j JOIN jobs_jobattempt a "
            "ON a.job_id = j.id AND a.number = 1 WHERE j.id = ANY(%s::uuid[])",
            [ids],
        )
        again = [started.timestamp() - killed for started, _ in rows]
        lost = [finished.timestamp() - killed for _, finished in rows if finished is not None]
    finally:
        client = stack.client()
        for job_id in ids:
            client.request("POST", f"/api/v1/jobs/{job_id}/cancel")
    worst = max(again) if again else seen
    report.add(6, f"kill -9 to running again, {len(ids)} jobs (the slowest)", f"{worst:.1f} s", "< 30 s", worst < 30)
    report.note(
        6,
        f"{len(ids)} diagnostics.sleep jobs ran on a worker whose process group got SIGKILL; a fresh worker was "
        f"started at once. The reconciler marked the lost attempts after "
        f"{', '.join(f'{x:.1f}' for x in sorted(lost)) or '?'} s and the jobs' second attempts started after "
        f"{', '.join(f'{x:.1f}' for x in sorted(again))} s (started_at in PostgreSQL; the bench saw them after "
        f"{seen:.1f} s). Settings: JOB_LEASE_SECONDS {stack.env.get('JOB_LEASE_SECONDS', '15 (default)')}, "
        f"the lease renewed every third of it; RECONCILE_INTERVAL_SECONDS "
        f"{stack.env.get('RECONCILE_INTERVAL_SECONDS', '1 (default)')}; then the first retry's backoff.",
    )
    try:
        stack.wait_terminal(ids, 30)  # cancelled: the fresh worker is free again
    except BenchError as exc:
        report.note(6, f"the cancelled sleep jobs did not end in time: {exc}")

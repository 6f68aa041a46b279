"""Benchmark 9: a schedule firing, from its time to its job.

In bench/run (`bench/run schedules`), with the stack's own beat (the Procfile's, started with
the stack) as the only one firing:

- an `every_seconds: 1` schedule of `diagnostics.noop`, made through `POST /api/v1/schedules`:
  for N firings after the first (a warm-up: the schedule was made at an arbitrary point of
  beat's sweep), the lag `created_at - scheduled_for` of each job, read from PostgreSQL
  (median, p95, max), and how many ticks were skipped (consecutive `scheduled_for` more than
  1.5 s apart);
- in the same wait, a cron schedule `* * * * *` (UTC): the lag of its firing(s) at the minute.

`created_at` is stamped by beat's process when it writes the job; the job is visible to
others at the sweep's commit, a few milliseconds later. Both schedules are deleted at the
end, and a worker runs whatever they made.
"""

from __future__ import annotations

import itertools
import statistics
import time
from typing import Any

from bench.benchmarks import NOOP, Sizes
from bench.client import Client, percentile
from bench.report import Report, fmt_ms
from bench.stack import BenchError, Stack, log

NUMBER = 9
GOAL_S = 1.0
SKIPPED_GAP_S = 1.5


def _create(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    status, data = client.json("POST", "/api/v1/schedules", {**NOOP, **body})
    if status != 201:
        raise BenchError(f"POST /api/v1/schedules answered {status}: {str(data)[:300]}")
    return data


def _firings(stack: Stack, schedule_id: str) -> list[tuple[float, float]]:
    """(scheduled_for, lag in seconds) of each job the schedule made, in time order."""
    rows = stack.sql(
        "SELECT extract(epoch FROM scheduled_for), extract(epoch FROM created_at - scheduled_for) "
        "FROM jobs_job WHERE schedule_id = %s ORDER BY scheduled_for",
        [schedule_id],
    )
    return [(float(due), float(lag)) for due, lag in rows]


def schedules(stack: Stack, report: Report, sizes: Sizes) -> None:
    firings = sizes.schedule_firings
    client = stack.client()
    cron = _create(client, {"cron": "* * * * *", "timezone": "UTC"})
    every = _create(client, {"every_seconds": 1})
    try:
        to_minute = 60 - time.time() % 60
        log(f"waiting for {firings + 1} firings of every_seconds 1 and the cron's at the minute ({to_minute:.0f} s)")
        Stack._wait(
            lambda: len(_firings(stack, every["id"])) > firings and _firings(stack, cron["id"]),
            max(firings, to_minute) + 60,
            "the schedules did not fire",
            interval=0.5,
        )
    finally:
        for schedule in (every, cron):
            client.request("DELETE", f"/api/v1/schedules/{schedule['id']}")
    timed = _firings(stack, every["id"])[1 : firings + 1]
    lags = [lag * 1000 for _, lag in timed]
    skipped = sum(round(b - a) - 1 for (a, _), (b, _) in itertools.pairwise(timed) if b - a > SKIPPED_GAP_S)
    worst = max(lags)
    report.add(
        NUMBER,
        f"every_seconds 1: job's created_at - scheduled_for, {len(lags)} firings",
        f"median {fmt_ms(statistics.median(lags))}, p95 {fmt_ms(percentile(lags, 95))}, max {fmt_ms(worst)}",
        "< 1 s",
        worst < GOAL_S * 1000,
    )
    report.add(NUMBER, "every_seconds 1: ticks skipped", str(skipped), "0", skipped == 0)
    cron_lags = [lag * 1000 for _, lag in _firings(stack, cron["id"])]
    report.add(
        NUMBER,
        "cron `* * * * *`: job's created_at - scheduled_for",
        ", ".join(fmt_ms(lag) for lag in cron_lags),
        "< 1 s",
        max(cron_lags) < GOAL_S * 1000,
    )
    report.note(
        NUMBER,
        f"Schedules: made through the API, fired by the Procfile's beat (SCHEDULE_SWEEP_SECONDS "
        f"{stack.env.get('SCHEDULE_SWEEP_SECONDS', 'default')}); lags from PostgreSQL, the job's created_at "
        f"(stamped by beat) minus its scheduled_for; the interval schedule's first firing is left out as a "
        f"warm-up. Lags in ms: {', '.join(f'{lag:.0f}' for lag in lags)}.",
    )
    stack.drain_backlog()  # the no-op jobs they made, so the next benchmark starts idle

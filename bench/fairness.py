"""Benchmark 10: fair dispatch (apps.jobs.dispatch), side by side with first-in-first-out.

In bench/run (`bench/run fairness`), each figure twice in the same run: with the platform's
own windows (the defaults), and with a window too large to bind (`DISPATCH_WINDOW_MIN` and
`_MAX` of 100,000,000 for the beat that leads), under which every job goes to Redis at
submit as before fair dispatch: first in, first out.

- **Behind a backlog:** the benchmark's client submits a backlog of `diagnostics.noop` jobs
  (default 20,000) with `POST /api/v1/jobs/batch`, then a second client submits 5 jobs one
  at a time; each of those 5, `finished_at - created_at` from the API; median and worst.
  The backlog then drains before the next side runs.
- **Drain with one client:** N no-op jobs of one client in batches of 1,000, from the first
  submit to the last `finished_at` (bench 1's measure), interleaved rounds, median.
- **Submit to start** on an idle platform under the windows is bench 4 (`latency`): the
  window lets a job through at submit.
"""

from __future__ import annotations

import statistics
import time

from bench import cpu
from bench.benchmarks import NOOP, Sizes, _platform_drain, _ts
from bench.client import Client
from bench.report import Report, fmt_rate
from bench.stack import BenchError, Process, Stack, log

NUMBER = 10
SMALL_JOBS = 5
UNBOUNDED = {"DISPATCH_WINDOW_MIN": "100000000", "DISPATCH_WINDOW_MAX": "100000000"}
SIDES = {"fair": {}, "fifo": UNBOUNDED}


def _beats(stack: Stack) -> list[Process]:
    return [p for p in stack.processes if p.name.startswith("beat")]


def _restart_beat(stack: Stack, env: dict[str, str]) -> None:
    """Replace the stack's beat with one of these settings, and wait until it has sized the
    default queue's window (it leads once the old one resigned)."""
    for process in _beats(stack):
        stack.stop(process)
    r = stack.redis()
    r.delete(*(f"jobplatform:dispatch:{what}:default" for what in ("window", "waiting")))
    stack.spawn(f"beat-{int(time.time())}", stack.procfile["beat"], env={**stack.env, **env})
    want = env.get("DISPATCH_WINDOW_MAX")

    def ready() -> bool:
        size = r.get("jobplatform:dispatch:window:default")
        return size is not None and (want is None or int(size) == int(want))

    Stack._wait(ready, 60, "the new beat did not size the default queue's window")


def _behind_backlog(stack: Stack, small: Client, backlog: int) -> list[float]:
    """Seconds from created to finished of each of the small client's jobs."""
    stack.wait_idle(300)
    client = stack.client()
    body = ('{"jobs": [' + ",".join(['{"kind": "diagnostics.noop", "payload": {}}'] * 1000) + "]}").encode()
    for _ in range(backlog // 1000):
        status, _, data = client.request("POST", "/api/v1/jobs/batch", body)
        if status != 202:
            raise BenchError(f"POST /api/v1/jobs/batch answered {status}: {data[:200]!r}")
    ids = []
    for _ in range(SMALL_JOBS):
        status, job = small.json("POST", "/api/v1/jobs", NOOP)
        if status != 202:
            raise BenchError(f"the small client's POST /api/v1/jobs answered {status}")
        ids.append(job["id"])
    stack.wait_terminal(ids, 120 + backlog / 20)
    waits = []
    for job_id in ids:
        status, job = small.json("GET", f"/api/v1/jobs/{job_id}")
        if status != 200 or job["status"] != "succeeded":
            raise BenchError(f"the small client's job {job_id} ended {job.get('status')}")
        waits.append(_ts(job["finished_at"]) - _ts(job["created_at"]))
    stack.wait_idle(120 + backlog / 20)  # the backlog drains before the other side runs
    return waits


def fairness(stack: Stack, report: Report, sizes: Sizes) -> None:
    backlog = sizes.fairness_backlog
    small = Client(stack.port, stack.manage("issue_token", "bench-small").strip().splitlines()[-1].strip())
    stack.start_worker()
    waits: dict[str, list[float]] = {}
    drains: dict[str, list[float]] = {side: [] for side in SIDES}
    spent: dict[str, dict[str, float]] = {side: {} for side in SIDES}
    try:
        for side, env in SIDES.items():
            _restart_beat(stack, env)
            waits[side] = _behind_backlog(stack, small, backlog)
            log(f"fairness, {side}: the small client's jobs took median {statistics.median(waits[side]):.2f} s")
        for round_ in range(sizes.drain_rounds):
            for side, env in SIDES.items():
                _restart_beat(stack, env)
                run = _platform_drain(stack, sizes.drain_jobs)
                drains[side].append(sizes.drain_jobs / run["seconds"])
                for role, seconds in run["cpu"].items():
                    spent[side][role] = spent[side].get(role, 0.0) + seconds
            rates = ", ".join(f"{side} {d[-1]:.0f} jobs/s" for side, d in drains.items())
            log(f"fairness, drain round {round_ + 1}: {rates}")
    finally:
        _restart_beat(stack, {})  # the benchmarks after this one run with the defaults
    for side, label in (("fair", "fair dispatch (defaults)"), ("fifo", "first in, first out (unbounded window)")):
        median, worst = statistics.median(waits[side]), max(waits[side])
        goal, met = ("< 3 s", median < 3) if side == "fair" else ("", None)
        report.add(
            NUMBER,
            f"{label}: a second client's job behind {backlog:,} jobs, created to finished",
            f"median {median:.2f} s, worst {worst:.2f} s",
            goal,
            met,
        )
    rate = {side: statistics.median(d) for side, d in drains.items()}
    for side, label in (("fair", "fair dispatch"), ("fifo", "first in, first out")):
        report.add(NUMBER, f"{label}: drain of {sizes.drain_jobs:,} jobs of one client", fmt_rate(rate[side], "jobs/s"))
    ratio = rate["fair"] / rate["fifo"]
    report.add(NUMBER, "drain, fair / first in, first out", f"{ratio:.2f}", "≥ 0.9", ratio >= 0.9)
    rounds = ", ".join(f"{fair / fifo:.2f}" for fair, fifo in zip(drains["fair"], drains["fifo"], strict=True))
    jobs = sizes.drain_jobs * sizes.drain_rounds
    report.note(NUMBER, f"Drain, fair / first in, first out, round by round: {rounds}.")
    for side in SIDES:
        report.note(NUMBER, f"Drain, {side}: " + cpu.describe(spent[side], jobs, "job") + ".")
    report.note(
        NUMBER,
        f"Both sides in one run on the same stack, switched by restarting beat (whose leader sizes the windows): "
        f"fair dispatch with the default DISPATCH_* settings, first in, first out with a window of 100,000,000 "
        f"(every job goes to Redis at submit). The backlog is {backlog:,} diagnostics.noop jobs of the benchmark's "
        f"client in batches of 1,000; then a second client submits {SMALL_JOBS} jobs one at a time. Drain: "
        f"median of {sizes.drain_rounds} interleaved round(s), as bench 1 measures it. Submit to start on an idle "
        f"platform, through the window, is bench 4.",
    )

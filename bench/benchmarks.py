"""The shared sizes and helpers of the benchmarks, and benchmarks 4 (submit to start) and 1
(worker drain). Each benchmark puts the stack in the state it needs (a worker running or not),
measures, and adds its rows and notes to the report; none asserts anything. The others live in
bench/recovery.py (6), bench/submit.py (2 and 3) and bench/scale.py (5)."""

from __future__ import annotations

import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bench import cpu
from bench.client import percentile
from bench.report import Report, fmt_ms, fmt_rate
from bench.stack import ROOT, BenchError, Stack, log

NOOP = {"kind": "diagnostics.noop", "payload": {}}
NOOP_BODY = json.dumps(NOOP).encode()
TERMINAL = ("succeeded", "failed", "cancelled")
BATCH_SIZE = 1000


@dataclass(frozen=True)
class Sizes:
    drain_jobs: int = 4000
    drain_rounds: int = 3
    api_clients: tuple[int, ...] = (1, 16, 64)
    api_requests: int = 3000  # per endpoint and concurrency, bounded by api_seconds too
    api_seconds: float = 15.0
    batches: int = 10
    latency_jobs: int = 200
    scale_rows: int = 1_000_000
    scale_samples: int = 200
    sweep_repeats: int = 20
    recovery_sleep: float = 120.0
    workflow_rounds: int = 4  # bench/workflows.py: submit rounds (release and drain: 2)
    schedule_firings: int = 30  # bench/schedules.py: firings of an every_seconds 1 schedule timed
    fairness_backlog: int = 20_000  # bench/fairness.py: one client's backlog ahead of another's jobs
    webhook_deliveries: int = 2_000  # bench/webhooks_io.py: deliveries per side (I/O pool, prefork)


QUICK = Sizes(
    drain_jobs=500,
    drain_rounds=1,
    api_requests=300,
    api_seconds=3.0,
    batches=2,
    latency_jobs=20,
    scale_rows=50_000,
    scale_samples=30,
    sweep_repeats=5,
    workflow_rounds=2,
    schedule_firings=10,
    fairness_backlog=2_000,
    webhook_deliveries=300,
)


def _ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def _batch_body(count: int) -> bytes:
    return json.dumps({"jobs": [NOOP] * count}).encode()


def _met(value: float, goal: float, *, below: bool) -> bool:
    return (value < goal) if below else (value >= goal)


# --- 4. submit to start -----------------------------------------------------------------


def latency(stack: Stack, report: Report, sizes: Sizes) -> None:
    stack.start_worker()
    stack.wait_idle(120)
    client = stack.client()
    waits, posts = [], []
    for _ in range(sizes.latency_jobs):
        t0 = time.perf_counter()
        status, job = client.json("POST", "/api/v1/jobs", NOOP)
        posts.append((time.perf_counter() - t0) * 1000)
        if status != 202:
            raise BenchError(f"POST /api/v1/jobs answered {status}: {str(job)[:200]}")
        deadline = time.monotonic() + 30
        while job["status"] not in TERMINAL:
            if time.monotonic() > deadline:
                raise BenchError(f"job {job['id']} was still {job['status']} after 30 s")
            # A bounded long poll: the answer comes when the job changes.
            status, job = client.json("GET", f"/api/v1/jobs/{job['id']}?wait=5")
            if status != 200:
                raise BenchError(f"GET /api/v1/jobs/{{id}} answered {status}")
        if job["status"] != "succeeded" or not job.get("started_at"):
            raise BenchError(f"job {job['id']} ended {job['status']}")
        waits.append((_ts(job["started_at"]) - _ts(job["created_at"])) * 1000)
    p50, p99 = percentile(waits, 50), percentile(waits, 99)
    report.add(4, "started_at - created_at, p50", fmt_ms(p50), "< 20 ms", _met(p50, 20, below=True))
    report.add(4, "started_at - created_at, p99", fmt_ms(p99))
    report.note(
        4,
        f"{len(waits)} diagnostics.noop jobs, one at a time on an idle platform (one worker, beat, web); each "
        f"submitted with POST /api/v1/jobs, then followed with GET /api/v1/jobs/{{id}}?wait=5 until it ended. "
        f"The POST itself took {fmt_ms(percentile(posts, 50))} at p50 (client side).",
    )


# --- 1. worker drain ----------------------------------------------------------------------


def _platform_drain(stack: Stack, jobs: int) -> dict[str, Any]:
    stack.wait_idle(120)
    before = cpu.snapshot()
    client = stack.client()
    mode = "batch"
    bodies = {size: _batch_body(size) for size in {BATCH_SIZE, jobs % BATCH_SIZE or BATCH_SIZE}}
    t0, wall0 = time.perf_counter(), time.time()
    submitted = 0
    while submitted < jobs:
        size = min(BATCH_SIZE, jobs - submitted)
        status, _, data = client.request("POST", "/api/v1/jobs/batch", bodies[size])
        if status in (404, 405) and submitted == 0:
            mode = "single"
            break
        if status != 202:
            raise BenchError(f"POST /api/v1/jobs/batch answered {status}: {data[:200]!r}")
        submitted += size
    if mode == "single":
        _submit_singly(stack, jobs)
    submit_seconds = time.perf_counter() - t0
    deadline = time.monotonic() + 120 + jobs / 10
    # Polled gently (a COUNT every 20 ms was a few percent of a core, taken from the platform
    # being measured); the end is read exactly from the last finished_at instead.
    while stack.active_jobs():
        if time.monotonic() > deadline:
            raise BenchError(f"{stack.active_jobs()} jobs still active {time.perf_counter() - t0:.0f} s after submit")
        time.sleep(0.2)
    last = stack.sql(
        "SELECT extract(epoch FROM max(finished_at)) FROM jobs_job WHERE finished_at >= to_timestamp(%s)", [wall0]
    )
    seconds = float(last[0][0]) - wall0
    spent = cpu.spent(before, cpu.snapshot())
    return {"seconds": seconds, "submit_seconds": submit_seconds, "mode": mode, "cpu": spent}


def _submit_singly(stack: Stack, jobs: int, threads: int = 16) -> None:
    """The fallback while POST /api/v1/jobs/batch does not exist: one POST per job."""
    per_thread = [jobs // threads + (1 if i < jobs % threads else 0) for i in range(threads)]

    def submit(count: int) -> None:
        client = stack.client()
        for _ in range(count):
            status, _, data = client.request("POST", "/api/v1/jobs", NOOP_BODY)
            if status != 202:
                raise BenchError(f"POST /api/v1/jobs answered {status}: {data[:200]!r}")

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(submit, n) for n in per_thread]:
            future.result()


def _baseline_drain(stack: Stack, system: str, jobs: int, *, events: bool) -> dict[str, Any]:
    db = {"plain": 3, "dcr": 4}[system]
    env = {**stack.env, "BENCH_BROKER_URL": stack.redis_url(db), "PYTHONPATH": str(ROOT)}
    module = "bench.plain_celery"
    if system == "dcr":
        stack.dcr_migrate()
        env["DJANGO_SETTINGS_MODULE"] = "bench.dcr_settings"
        module = "bench.dcr_celery"
    stack.redis(db).flushdb()
    worker = stack.spawn(
        f"{system}-worker",
        f"celery -A {module} worker --loglevel=WARNING --concurrency={stack.worker_concurrency} "
        f"--prefetch-multiplier=1{' -E' if events else ''} --without-mingle --without-gossip -n bench-{system}@%h",
        env=env,
    )
    try:
        out = stack.python("bench.baseline", system, str(jobs), env=env, timeout=300 + jobs / 5)
    finally:
        stack.stop(worker)
    return json.loads(out.strip().splitlines()[-1])


def drain(stack: Stack, report: Report, sizes: Sizes) -> None:
    n = sizes.drain_jobs
    events = stack.task_events  # the baselines' workers get the same setting as the platform's
    names = {
        "platform": f"platform: {n:,} diagnostics.noop jobs",
        "plain": "plain Celery: same no-op tasks",
        "dcr": "Celery + django-celery-results (PostgreSQL)",
        "platform_quiet": "platform, task events off (WORKER_TASK_EVENTS=0)",
        "plain_quiet": "plain Celery, task events off",
    }
    if not events:
        names = {k: v for k, v in names.items() if not k.endswith("_quiet")}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for round_ in range(1, sizes.drain_rounds + 1):
        # Interleaved rounds, so a noisy neighbour on the machine hurts all of them alike.
        stack.start_worker()
        runs["platform"].append(_platform_drain(stack, n))
        stack.stop_worker()  # the platform's worker must not compete with the baselines
        runs["plain"].append(_baseline_drain(stack, "plain", n, events=events))
        runs["dcr"].append(_baseline_drain(stack, "dcr", n, events=events))
        if events:
            # What task events cost, measured: the platform and plain Celery without them.
            stack.start_worker(env={"WORKER_TASK_EVENTS": "0"})
            runs["platform_quiet"].append(_platform_drain(stack, n))
            stack.stop_worker()
            runs["plain_quiet"].append(_baseline_drain(stack, "plain", n, events=False))
        log(
            f"drain round {round_}: "
            + ", ".join(f"{name} {n / r[-1]['seconds']:.0f} jobs/s" for name, r in runs.items())
        )
    rate = {name: statistics.median(n / r["seconds"] for r in rs) for name, rs in runs.items()}
    mode = runs["platform"][0]["mode"]
    for name, label in names.items():
        report.add(1, label, fmt_rate(rate[name], "jobs/s"))
    ratio_plain = rate["platform"] / rate["plain"]
    ratio_dcr = rate["platform"] / rate["dcr"]
    report.add(1, "platform / plain Celery", f"{ratio_plain:.2f}", "≥ 0.6", ratio_plain >= 0.6)
    report.add(1, "platform / Celery + django-celery-results", f"{ratio_dcr:.2f}", "≥ 3", ratio_dcr >= 3)
    if events:
        quiet = rate["platform_quiet"] / rate["plain_quiet"]
        report.add(1, "platform / plain Celery, both without task events", f"{quiet:.2f}")
    failed = stack.sql("SELECT count(*) FROM jobs_job WHERE kind = 'diagnostics.noop' AND status <> 'succeeded'")[0][0]
    submit = statistics.median(r["submit_seconds"] for r in runs["platform"])
    how = (
        f"submitted with POST /api/v1/jobs/batch in batches of {BATCH_SIZE} (median {submit:.2f} s for all of them)"
        if mode == "batch"
        else f"submitted one by one with POST /api/v1/jobs from 16 threads (POST /api/v1/jobs/batch answered "
        f"404/405; median {submit:.2f} s for all of them)"
    )
    on_off = "on (WORKER_TASK_EVENTS, the default: Flower's task views need them)" if events else "off"
    report.note(
        1,
        f"Median of {sizes.drain_rounds} interleaved round(s) of {n:,} jobs each; each figure runs from the first "
        f"submit (or publish) until the last job is done. Platform: {how}, done when PostgreSQL holds no queued, "
        f"running or retrying job; {failed} job(s) did not succeed. The worker is the Procfile's "
        f"(concurrency {stack.worker_concurrency}, prefetch 1, late acks, task events {on_off}, a pool process "
        f"replaced every {stack.env.get('WORKER_MAX_TASKS_PER_CHILD', '1000')} jobs by WORKER_MAX_TASKS_PER_CHILD); "
        f"web and beat stay up throughout.",
    )
    report.note(
        1,
        f"Baselines, with the platform's worker stopped: the same Redis server (databases 3 and 4), a worker with "
        f"the same settings (--concurrency={stack.worker_concurrency} --prefetch-multiplier=1, acks_late, task "
        f"events {'on (-E)' if events else 'off'}); N tasks published through one producer (apply_async). Plain "
        f"Celery (bench/plain_celery.py) ignores results, each task counts itself in Redis. Celery + "
        f"django-celery-results (bench/dcr_settings.py, bench/dcr_celery.py): result_backend 'django-db', "
        f"task_track_started, the same PostgreSQL database and connection settings; done when N SUCCESS rows are "
        f"there."
        + (
            " The two rows without task events are there to show what events cost each side; the goals compare "
            "like with like, events on both."
            if events
            else ""
        ),
    )
    per_job: dict[str, float] = {}  # ms of CPU, all processes, per job
    for name in ("platform", "plain", "dcr", "platform_quiet", "plain_quiet"):
        if name in runs and all("cpu" in r for r in runs[name]):
            totals: dict[str, float] = {}
            for r in runs[name]:
                for role, seconds in r["cpu"].items():
                    totals[role] = totals.get(role, 0.0) + seconds
            report.note(1, f"{names[name]}: " + cpu.describe(totals, n * len(runs[name]), "job") + ".")
            if totals:
                per_job[name] = sum(totals.values()) / (n * len(runs[name])) * 1000
    report.note(
        1,
        "What a platform job costs that a plain Celery task does not: two PostgreSQL statements, each its own "
        "committed transaction (the claim, UPDATE ... RETURNING, before the handler runs; the finish, one WITH "
        "UPDATE ... INSERT of the attempt, before the message is acknowledged; both prepared statements, pinned by "
        "tests/unit/jobs/test_store.py), and a Redis pipeline of counters and doorbells sent behind the job by a "
        "thread of its process. Neither statement can move off the job's path without giving up a guarantee: "
        "the claim is what stops a second worker from running the job, and the finish must be durable before the "
        "message goes.",
    )
    if "platform" in per_job and "plain" in per_job:
        cores = os.cpu_count() or 1
        dcr = (
            f"; a Celery + django-celery-results task {per_job['dcr']:.2f} ms, a ratio of "
            f"{per_job['dcr'] / per_job['platform']:.2f}"
            if "dcr" in per_job
            else ""
        )
        report.note(
            1,
            f"Why the ratios are what they are: every process of a drain runs on the same {cores} cores, so the "
            f"machine's CPU per job bounds the rate. A platform job cost {per_job['platform']:.2f} ms of CPU in all, "
            f"a plain Celery task {per_job['plain']:.2f} ms: at most {cores * 1000 / per_job['platform']:.0f} and "
            f"{cores * 1000 / per_job['plain']:.0f} per second, a ratio of "
            f"{per_job['plain'] / per_job['platform']:.2f} before any waiting{dcr}. The split above says where the "
            f"difference goes: the pool processes (claim, finish, the Redis writes' thread), PostgreSQL, and the "
            f"worker's main process, which handles each message and its task events either way. The platform's "
            f"two committed statements per job (and its Redis counters) are the price of its guarantees; the "
            f"django-celery-results setup pays more per task (its STARTED and SUCCESS rows, on a connection "
            f"Celery's Django fixup closes after every task).",
        )
    per_round = "; ".join(
        f"round {i + 1}: " + ", ".join(f"{name} {n / runs[name][i]['seconds']:.0f}" for name in runs)
        for i in range(sizes.drain_rounds)
    )
    report.note(1, f"jobs/s by round: {per_round}.")

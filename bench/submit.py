"""Benchmarks 3 (batch submit) and 2 (API submit): the web tier's submit paths, measured with
no worker running."""

from __future__ import annotations

import statistics
import time

from bench import cpu
from bench.benchmarks import BATCH_SIZE, NOOP_BODY, Sizes, _batch_body
from bench.client import load
from bench.report import Report, fmt_ms, fmt_rate
from bench.stack import BenchError, Stack

# --- 3. batch submit ----------------------------------------------------------------------


def batch(stack: Stack, report: Report, sizes: Sizes) -> None:
    stack.stop_worker()
    client = stack.client()
    status, _, data = client.request("POST", "/api/v1/jobs/batch", _batch_body(10))  # warm, and probe
    if status in (404, 405):
        report.add(3, "POST /api/v1/jobs/batch", f"skipped: the endpoint answered {status}", "≥ 5,000 jobs/s")
        report.note(3, "POST /api/v1/jobs/batch does not exist on this build, so nothing was measured.")
        return
    if status != 202:
        raise BenchError(f"POST /api/v1/jobs/batch answered {status}: {data[:200]!r}")
    body = _batch_body(BATCH_SIZE)
    seconds = []
    before = cpu.snapshot()
    for _ in range(sizes.batches):
        t0 = time.perf_counter()
        status, _, data = client.request("POST", "/api/v1/jobs/batch", body)
        seconds.append(time.perf_counter() - t0)
        if status != 202:
            raise BenchError(f"POST /api/v1/jobs/batch answered {status}: {data[:200]!r}")
    spent = cpu.spent(before, cpu.snapshot())
    rate = BATCH_SIZE / statistics.median(seconds)
    report.note(3, cpu.describe(spent, BATCH_SIZE * len(seconds), "job") + ".")
    report.add(
        3, f"jobs accepted per second, batches of {BATCH_SIZE:,}", fmt_rate(rate, "jobs/s"), "≥ 5,000", rate >= 5000
    )
    report.note(
        3,
        f"{sizes.batches} batches of {BATCH_SIZE:,} diagnostics.noop jobs, one after the other from one client; "
        f"the figure is {BATCH_SIZE:,} / the median batch's time ({fmt_ms(statistics.median(seconds) * 1000)}; "
        f"slowest {fmt_ms(max(seconds) * 1000)}; over all batches "
        f"{BATCH_SIZE * len(seconds) / sum(seconds):,.0f} jobs/s). A batch is accepted when its jobs are committed "
        f"in PostgreSQL and published to Redis. No worker ran, so the web tier had the machine.",
    )
    web, pg = (spent.get(role, 0.0) / len(seconds) * 1000 for role in ("web (gunicorn)", "PostgreSQL"))
    if web and pg:
        # One client, one batch at a time: the web process and PostgreSQL take turns on it.
        report.note(
            3,
            f"Why the rate is what it is: a batch is one request, handled by one gunicorn thread, and PostgreSQL "
            f"works on it in turn (the COPY, the commit, the outbox UPDATE), so their CPU per batch adds up: "
            f"{fmt_ms(web)} in gunicorn (parsing, validating and answering 1,000 jobs, building their messages) "
            f"and {fmt_ms(pg)} in PostgreSQL (1,000 rows into jobs_job and its indexes, twice: inserted, then "
            f"marked published). That bounds one client at about {BATCH_SIZE * 1000 / (web + pg):,.0f} jobs/s; "
            f"clients sending batches side by side get more out of the 2 cores.",
        )


# --- 2. API submit ------------------------------------------------------------------------


def api(stack: Stack, report: Report, sizes: Sizes) -> None:
    unexpected = []
    post_cpu: dict[int, str] = {}
    for clients in sizes.api_clients:
        # Each level starts with nothing in flight: admission control counts the client's
        # in-flight jobs on every submit, so a backlog left by the level before would tax it.
        stack.drain_backlog()
        stack.stop_worker()
        common = {"clients": clients, "max_requests": sizes.api_requests, "max_seconds": sizes.api_seconds}
        floor = load(stack.port, stack.token, "GET", "/healthz", None, expect=200, **common)
        before = cpu.snapshot()
        post = load(stack.port, stack.token, "POST", "/api/v1/jobs", NOOP_BODY, expect=202, **common)
        post_cpu[clients] = cpu.describe(cpu.spent(before, cpu.snapshot()), post.requests, "POST")
        for name, result in (("POST /api/v1/jobs", post), ("GET /healthz", floor)):
            value = (
                f"{fmt_rate(result.rate, 'req/s')}, p50 {fmt_ms(result.p50)}, p99 {fmt_ms(result.p99)} "
                f"({result.requests:,} requests)"
            )
            if name.startswith("POST") and clients == 16:
                report.add(2, f"{name}, {clients} clients", value, "p99 < 100 ms", result.p99 < 100)
            else:
                report.add(2, f"{name}, {clients} client{'s' if clients > 1 else ''}", value)
            if result.unexpected:
                unexpected.append(f"{name} at {clients} clients: {result.unexpected}")
        report.add(
            2,
            f"POST / healthz throughput, {clients} client{'s' if clients > 1 else ''}",
            f"{post.rate / floor.rate:.2f}",
        )
    report.note(
        2,
        f"Python load generator (bench/client.py): one thread and one keep-alive http.client connection per "
        f"client, to 127.0.0.1 only, each level bounded by {sizes.api_requests:,} requests or "
        f"{sizes.api_seconds:g} s; it runs on the same 2 cores as the server. gunicorn as the Procfile runs it "
        f"(WEB_CONCURRENCY {stack.env.get('WEB_CONCURRENCY', '2')}, WEB_THREADS {stack.env.get('WEB_THREADS', '4')}"
        f", access log on). GET /healthz touches no database: the framework's floor. POST submits "
        f"diagnostics.noop. API_THROTTLE_RATE, QUEUE_MAX_DEPTH and CLIENT_MAX_IN_FLIGHT raised so nothing is "
        f"refused. No worker ran while a level was measured (its jobs waited in Redis, and a worker ran them "
        f"before the next level started, so each level began with nothing in flight): the figures are the web "
        f"tier's.",
    )
    for clients, text in post_cpu.items():
        report.note(2, f"POST /api/v1/jobs at {clients} client{'s' if clients > 1 else ''}: {text}.")
    report.note(
        2,
        "A submit is four SQL statements (the token's lookup, the client's in-flight count at most once a second, "
        "the insert, the outbox mark after the publish; pinned by tests/unit/jobs/test_apis.py; all but the count "
        "prepared on the connection), two Redis round trips (the throttle; the queue depth with the cached "
        "in-flight count), the publish, and Django's and DRF's request handling (a plain submission's input and "
        "its answer are built without DRF's field machinery, held equal to DRF's by tests). At 16 clients the 2 "
        "cores are busy and requests wait for them: the latency is mostly queueing behind the CPU figure above "
        "(16 clients x the machine's CPU per POST / 2 cores, on average), against the framework floor of GET "
        "/healthz.",
    )
    if unexpected:
        report.note(2, "Unexpected answers (status: count; -1 is a connection error): " + "; ".join(unexpected))

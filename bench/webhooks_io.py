"""Benchmark 11: the I/O pool (worker-io, issue 18), side by side with the prefork pool.

In bench/run (`bench/run webhooks`): a webhook fan-out of N deliveries (default 2,000; real
`webhooks.deliver` jobs, made by apps.webhooks.services.webhook_delivery_submit as a
finishing job makes them) to a receiver in this process on loopback that answers 200 after
100 ms. Each side runs the same N, with no other worker consuming the I/O queues:

- **I/O pool:** the Procfile's `worker-io` line as it stands (threads, WORKER_IO_CONCURRENCY
  slots, 32 by default);
- **prefork pool:** the Procfile's `worker` line on the I/O queues alone
  (WORKER_QUEUES=io_high,io_default,io_low; WORKER_CONCURRENCY processes, 2 by default).

Deliveries/s is N over the span from the first delivery's start to the last one's end, from
PostgreSQL (the worker's start-up is not counted). The I/O side also reports worker-io's CPU
per delivery (its one process, every thread, over the same span, from /proc): on shared cores
a steadier figure than the rate, and the one that bounds it, since the threads share one
interpreter. Both sides run with WEBHOOK_ALLOW_PRIVATE=1
(the receiver is on loopback).
"""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading
import time
from pathlib import Path

from bench.benchmarks import Sizes
from bench.report import Report, fmt_rate
from bench.stack import ROOT, BenchError, Stack, free_port, log

NUMBER = 11
ANSWER_SECONDS = 0.1
GOAL = 150.0
IO_QUEUES = "io_high,io_default,io_low"
ALLOW = {"WEBHOOK_ALLOW_PRIVATE": "1"}


class _Receiver(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", free_port()), _Answer)
        self.received = 0
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, name="receiver", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(ANSWER_SECONDS)  # the receiver's own work
        with self.server.lock:
            self.server.received += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _seed(stack: Stack, url: str, count: int) -> None:
    """`count` deliveries about one finished job of the benchmark's client, queued."""
    env = {**stack.env, **ALLOW, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(ROOT)}
    stack.python("bench.webhooks_io", url, str(count), env=env, timeout=600)


def _side(stack: Stack, receiver: _Receiver, name: str, command: str, env: dict[str, str], count: int) -> dict:
    (since,) = stack.sql("SELECT now()")[0]  # this side's deliveries are the ones made after
    mine = "kind = 'webhooks.deliver' AND created_at >= %s"
    before = receiver.received
    _seed(stack, receiver.url, count)
    worker = stack.spawn(f"{name}-{int(time.time())}", command, env={**stack.env, **ALLOW, **env})
    cpu_from = cpu_to = None
    try:
        deadline = time.monotonic() + 120 + count / 5
        while True:
            ((started, active),) = stack.sql(
                f"SELECT count(*) FILTER (WHERE started_at IS NOT NULL), count(*) FILTER (WHERE status = ANY(%s)) "
                f"FROM jobs_job WHERE {mine}",
                [["queued", "running", "retrying"], since],
            )
            # The worker's CPU from its first delivery on, so its start-up is not counted.
            if cpu_from is None and started:
                cpu_from = _cpu_seconds(worker.popen.pid)
            if not active:
                cpu_to = _cpu_seconds(worker.popen.pid)
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{name}: the deliveries did not finish")
            time.sleep(0.2)
    finally:
        stack.stop(worker)
    ((done, failed, first, last),) = stack.sql(
        "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status <> 'succeeded'), "
        "extract(epoch FROM min(started_at)), extract(epoch FROM max(finished_at)) "
        f"FROM jobs_job WHERE {mine}",
        [since],
    )
    if failed or done != count:
        raise BenchError(f"{name}: {done} of {count} deliveries succeeded, {failed} did not")
    seconds = float(last) - float(first)
    rate = count / seconds
    cpu_ms = (cpu_to - cpu_from) * 1000 / count if cpu_from is not None and cpu_to is not None else None
    log(
        f"webhooks, {name}: {count:,} deliveries in {seconds:.1f} s, {rate:.0f}/s, worker CPU {cpu_ms or 0:.2f} ms each"
    )
    return {"rate": rate, "seconds": seconds, "received": receiver.received - before, "cpu_ms": cpu_ms}


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU of process `pid`, every thread of it (Linux /proc; None elsewhere).
    The Procfile's lines run exec'd (bench.stack.spawn), so `pid` is the worker's main
    process; a prefork worker's pool processes are its children and are not counted."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def webhooks(stack: Stack, report: Report, sizes: Sizes) -> None:
    count = sizes.webhook_deliveries
    had_worker = stack.worker is not None
    stack.stop_worker()  # nothing else may take the deliveries
    receiver = _Receiver()
    io_slots = stack.env.get("WORKER_IO_CONCURRENCY") or "32"
    try:
        io = _side(stack, receiver, "worker-io", stack.procfile["worker-io"], {}, count)
        prefork = _side(stack, receiver, "prefork", stack.procfile["worker"], {"WORKER_QUEUES": IO_QUEUES}, count)
    finally:
        receiver.shutdown()
        receiver.server_close()
        if had_worker:
            stack.start_worker(warm=False)
    report.add(
        NUMBER,
        f"I/O pool (worker-io, {io_slots} threads): {count:,} deliveries, receiver answers in 100 ms",
        f"{fmt_rate(io['rate'], 'deliveries/s')} ({io['seconds']:.1f} s)",
        f"≥ {GOAL:.0f}/s",
        io["rate"] >= GOAL,
    )
    if io["cpu_ms"] is not None:
        # Less noisy than the rate on a shared machine: what one delivery costs worker-io's
        # one process, whose threads share one interpreter (GIL).
        report.add(NUMBER, "I/O pool: worker-io's CPU per delivery", f"{io['cpu_ms']:.2f} ms")
    report.add(
        NUMBER,
        f"prefork pool (worker, {stack.worker_concurrency} processes): the same",
        f"{fmt_rate(prefork['rate'], 'deliveries/s')} ({prefork['seconds']:.1f} s)",
    )
    report.add(NUMBER, "I/O pool / prefork pool", f"{io['rate'] / prefork['rate']:.1f} times")
    report.note(
        NUMBER,
        f"Real webhooks.deliver jobs (signed POSTs, each a job with its claim, lease and outcome), {count:,} per "
        f"side, made by webhook_delivery_submit before the side's worker starts; a receiver in the benchmark's "
        f"process on loopback answers 200 after {ANSWER_SECONDS * 1000:.0f} ms. The rate is the count over the "
        f"span from the first delivery's start to the last one's end (PostgreSQL). The receiver got "
        f"{io['received']:,} and {prefork['received']:,} POSTs. The prefork side is the Procfile's worker line "
        f"with WORKER_QUEUES={IO_QUEUES}.",
    )


def _make(url: str, count: int) -> None:
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from apps.jobs import lifecycle
    from apps.jobs.models import Job, JobStatus
    from apps.webhooks.services import webhook_delivery_submit

    owner, _ = get_user_model().objects.get_or_create(username="bench-webhooks")
    job = lifecycle.job_submit(owner=owner, kind="diagnostics.noop", payload={})
    # Finished as a worker would have finished it: the deliveries are about a finished job.
    Job.objects.filter(id=job.id).update(status=JobStatus.SUCCEEDED, published_at=job.created_at)
    for _ in range(count):
        webhook_delivery_submit(job_id=str(job.id), url=url)
    print(json.dumps({"job": str(job.id), "deliveries": count}))


if __name__ == "__main__":
    _make(sys.argv[1], int(sys.argv[2]))

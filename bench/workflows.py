"""Benchmark 8: workflows, side by side with a plain batch of the same size, in one run.

In bench/run (`bench/run workflows`):

- submit: POST /api/v1/workflows of a chord (999 no-op jobs plus one that depends on all
  of them: 1,000 jobs, a workflow's most) against POST /api/v1/jobs/batch of 1,000 no-op
  jobs, interleaved, no worker running;
- GET /api/v1/workflows/{id} of that 1,000-job workflow against GET /api/v1/jobs/{id};
- release: a worker runs chords; from PostgreSQL, the chord's last job's started_at against
  the last member's finished_at;
- drain: 1,000 plain no-op jobs (a batch) against 1,000 no-op jobs of a workflow with no
  edges (a group), interleaved, from the submit to the last finished_at;
- the cost of one finish, in a Django process of the platform's settings against the same
  database (`python -m bench.workflows finish-costs REPEATS`, printing one JSON line): the SQL
  statements and time of lifecycle.job_succeed, as the worker calls it, for a plain job, a
  member with no dependents, and a member with k = 1, 10, 100 dependents, each in a 1,000-job
  workflow, and k = 1 in a 2-job one.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

from bench.benchmarks import NOOP, Sizes
from bench.client import Client, percentile
from bench.report import Report, fmt_ms, fmt_rate
from bench.stack import ROOT, BenchError, Stack, log

NUMBER = 8
JOBS = 1000  # a workflow's most (WORKFLOW_MAX_JOBS), and the batch it is compared with
SUBMIT_GOAL_S = 1.0
RELEASE_GOAL_S = 1.0
GET_GOAL_MS = 50.0
DEPENDENTS = (1, 10, 100)


def _chord(members: int) -> bytes:
    refs = [f"m{i}" for i in range(members)]
    jobs = [{"ref": ref, **NOOP} for ref in refs] + [{"ref": "last", **NOOP, "depends_on": refs}]
    return json.dumps({"name": "bench chord", "jobs": jobs}).encode()


def _group(size: int) -> bytes:
    return json.dumps({"name": "bench group", "jobs": [{"ref": f"g{i}", **NOOP} for i in range(size)]}).encode()


def _batch(size: int) -> bytes:
    return json.dumps({"jobs": [NOOP] * size}).encode()


def _post(client: Client, path: str, body: bytes) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    status, _, data = client.request("POST", path, body)
    seconds = time.perf_counter() - t0
    if status != 202:
        raise BenchError(f"POST {path} answered {status}: {data[:300]!r}")
    return seconds, json.loads(data)


def _workflow_done(stack: Stack, workflow_id: str, seconds: float) -> None:
    def done() -> bool:
        rows = stack.sql("SELECT status FROM workflows_workflow WHERE id = %s", [workflow_id])
        return bool(rows) and rows[0][0] != "running"

    Stack._wait(done, seconds, f"workflow {workflow_id} did not end", interval=0.2)


def _last_finish(stack: Stack, where: str, param: Any) -> float:
    row = stack.sql(f"SELECT extract(epoch FROM max(finished_at)), count(*) FROM jobs_job WHERE {where}", [param])
    if not row or row[0][0] is None:
        raise BenchError("no finished job to time")
    return float(row[0][0])


# --- submit and read, no worker -------------------------------------------------------------


def _submit_and_read(stack: Stack, report: Report, rounds: int, samples: int) -> None:
    stack.drain_backlog()
    stack.stop_worker()
    client = stack.client()
    chord, batch = _chord(JOBS - 1), _batch(JOBS)
    times: dict[str, list[float]] = {"batch": [], "workflow": []}
    workflow: dict[str, Any] = {}
    _post(client, "/api/v1/jobs/batch", _batch(10))  # warm both endpoints
    _post(client, "/api/v1/workflows", _chord(9))
    for _ in range(rounds):
        times["batch"].append(_post(client, "/api/v1/jobs/batch", batch)[0])
        seconds, workflow = _post(client, "/api/v1/workflows", chord)
        times["workflow"].append(seconds)
    batch_s, workflow_s = statistics.median(times["batch"]), statistics.median(times["workflow"])
    report.add(NUMBER, f"POST /api/v1/jobs/batch, {JOBS:,} no-op jobs (median)", f"{batch_s * 1000:.0f} ms")
    report.add(
        NUMBER,
        f"POST /api/v1/workflows, a chord of {JOBS:,} no-op jobs (median)",
        f"{workflow_s * 1000:.0f} ms ({workflow_s / batch_s:.2f} x the batch)",
        "< 1 s",
        workflow_s < SUBMIT_GOAL_S,
    )

    url, job_url = f"/api/v1/workflows/{workflow['id']}", f"/api/v1/jobs/{workflow['jobs'][0]['id']}"
    size = len(client.request("GET", url)[2])
    client.request("GET", job_url)
    reads: dict[str, list[float]] = {"workflow": [], "job": []}
    for _ in range(samples):  # interleaved, so both see the same machine
        for name, path in (("workflow", url), ("job", job_url)):
            t0 = time.perf_counter()
            status, _, _ = client.request("GET", path)
            reads[name].append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise BenchError(f"GET {path} answered {status}")
    wf50, job50 = percentile(reads["workflow"], 50), percentile(reads["job"], 50)
    report.add(
        NUMBER,
        f"GET /api/v1/workflows/{{id}}, {JOBS:,} jobs",
        f"p50 {fmt_ms(wf50)}, p99 {fmt_ms(percentile(reads['workflow'], 99))}",
        "p50 < 50 ms",
        wf50 < GET_GOAL_MS,
    )
    report.add(
        NUMBER,
        "GET /api/v1/jobs/{id} (one job, same run)",
        f"p50 {fmt_ms(job50)}, p99 {fmt_ms(percentile(reads['job'], 99))}",
    )
    report.note(
        NUMBER,
        f"Submit: {rounds} interleaved rounds, no worker running, one keep-alive client; the chord is 999 "
        f"diagnostics.noop jobs plus one that depends on all of them ({JOBS:,} jobs, the most a workflow "
        f"holds). Batch times: {', '.join(f'{s * 1000:.0f}' for s in times['batch'])} ms; workflow times: "
        f"{', '.join(f'{s * 1000:.0f}' for s in times['workflow'])} ms. Read: {samples} GETs of each, "
        f"interleaved, client side over keep-alive HTTP to gunicorn; the workflow's answer is {size:,} bytes "
        f"(three SQL statements whatever its size: the token, the workflow with its polling version, its nodes "
        f"joined with their jobs; pinned by tests/unit/workflows/test_detail_queries.py).",
    )


def _discard_unrun(stack: Stack) -> None:
    """Jobs submitted only to be measured (thousands, no worker ran) are not run: running them
    would take minutes and measure nothing new. They are cancelled in PostgreSQL, their workflows with
    them, and their messages removed from the broker, so the steps after start idle."""
    log("cancelling the submit step's jobs instead of running them")
    stack.sql(
        "UPDATE jobs_job SET status = 'cancelled', finished_at = now(), updated_at = now() "
        "WHERE status IN ('queued', 'waiting')"
    )
    stack.sql(
        "UPDATE workflows_workflow SET status = 'cancelled', unfinished = 0, finished_at = now(), "
        "updated_at = now() WHERE status = 'running'"
    )
    r = stack.redis(0)
    for queue in ("high", "default", "low"):
        # kombu's Redis transport keeps a list per queue and priority step: "default", "default\x06\x163", ...
        keys = [
            key
            for key in r.scan_iter(match=f"{queue}*")
            if key == queue.encode() or key.startswith(f"{queue}\x06\x16".encode())
        ]
        if keys:
            r.delete(*keys)


# --- release and drain, a worker running -----------------------------------------------------


def _release(stack: Stack, report: Report, rounds: int) -> None:
    client = stack.client()
    gaps, totals = [], []
    for _ in range(rounds):
        stack.wait_idle(300)
        wall0 = time.time()
        _, workflow = _post(client, "/api/v1/workflows", _chord(JOBS - 1))
        _workflow_done(stack, workflow["id"], 300)
        row = stack.sql(
            "SELECT extract(epoch FROM max(finished_at) FILTER (WHERE workflow_ref <> 'last')), "
            "extract(epoch FROM max(started_at) FILTER (WHERE workflow_ref = 'last')), "
            "extract(epoch FROM max(finished_at)), count(*) FILTER (WHERE status <> 'succeeded') "
            "FROM jobs_job WHERE workflow_id = %s",
            [workflow["id"]],
        )[0]
        if row[1] is None or row[3]:
            raise BenchError(f"the chord's last job did not run ({row[3]} job(s) did not succeed)")
        gaps.append((float(row[1]) - float(row[0])) * 1000)
        totals.append(float(row[2]) - wall0)
    gap = statistics.median(gaps)
    report.add(
        NUMBER,
        "chord: last job's start after its last member's finish (median)",
        f"{fmt_ms(gap)} (max {fmt_ms(max(gaps))})",
        "< 1 s",
        gap < RELEASE_GOAL_S * 1000,
    )
    report.note(
        NUMBER,
        f"Release: {rounds} chord(s) of {JOBS:,} jobs run by the Procfile's worker one after the other; the gap "
        f"is the last job's started_at minus the latest finished_at of its 999 members, both stamped by "
        f"the worker's processes on this machine's clock (gaps {', '.join(fmt_ms(g) for g in gaps)}). "
        f"Submit to the last job's finish: "
        f"{', '.join(f'{t:.1f} s' for t in totals)}.",
    )


def _drain(stack: Stack, report: Report, rounds: int) -> None:
    client = stack.client()
    rates: dict[str, list[float]] = {"batch": [], "group": []}
    for _ in range(rounds):
        for name in ("batch", "group"):
            stack.wait_idle(300)
            wall0 = time.time()
            if name == "batch":
                _, body = _post(client, "/api/v1/jobs/batch", _batch(JOBS))
                ids = [job["id"] for job in body["jobs"]]
                stack.wait_terminal(ids, 300)
                last = _last_finish(stack, "id = ANY(%s::uuid[])", ids)
            else:
                _, body = _post(client, "/api/v1/workflows", _group(JOBS))
                _workflow_done(stack, body["id"], 300)
                last = _last_finish(stack, "workflow_id = %s", body["id"])
            rates[name].append(JOBS / (last - wall0))
    batch, group = statistics.median(rates["batch"]), statistics.median(rates["group"])
    report.add(NUMBER, f"drain: {JOBS:,} plain no-op jobs (a batch)", fmt_rate(batch, "jobs/s"))
    report.add(NUMBER, f"drain: {JOBS:,} no-op jobs of a group (a workflow, no edges)", fmt_rate(group, "jobs/s"))
    report.add(NUMBER, "drain: group / batch", f"{group / batch:.2f}")
    report.note(
        NUMBER,
        f"Drain: {rounds} interleaved round(s) of each, the Procfile's worker (concurrency "
        f"{stack.worker_concurrency}); from the submit to the last job's finished_at. jobs/s by round: batch "
        f"{', '.join(f'{r:.0f}' for r in rates['batch'])}; group {', '.join(f'{r:.0f}' for r in rates['group'])}. "
        f"Why a group drains slower: a plain job's finish is one autocommitted statement; a member's is a "
        f"transaction that reads its node, then locks its workflow's row, counts it down and commits, so the "
        f"pool processes finishing members of the same workflow take turns at that lock until each commit "
        f"(see the per-finish rows below).",
    )


# --- the cost of one finish, in process ------------------------------------------------------


def _finish_costs_row(stack: Stack, report: Report, repeats: int) -> None:
    stack.stop_worker()  # the finishes below are this process's: no worker may claim them first
    env = {**stack.env, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(ROOT)}
    out = stack.python("bench.workflows", "finish-costs", str(repeats), env=env, timeout=900)
    costs = json.loads(out.strip().splitlines()[-1])
    for label, figures in costs.items():
        report.add(
            NUMBER,
            f"one finish: {label}",
            f"{figures['statements']} SQL statement{'s' if figures['statements'] != 1 else ''}, "
            f"{fmt_ms(figures['ms'])} (median of {repeats})",
        )
    report.note(
        NUMBER,
        "One finish: lifecycle.job_succeed, the call the worker makes after a handler returns, timed and its SQL "
        "statements counted (connection.execute_wrapper; BEGIN and COMMIT are not statements there) in a Django "
        "process of the platform's settings against the run's database and Redis, no worker running, each job "
        "claimed first with lifecycle.job_claim. The statements include the outbox marks of released dependents "
        "(run on commit). A member's finish reads its own node and locks its workflow's row: it grows with its "
        "dependents, not with its workflow (k = 1 costs the same in a 2-job and a 1,000-job workflow).",
    )
    _discard_unrun(stack)  # the rest of those workflows: thousands of jobs that measure nothing more


def _first_sweep(stack: Stack) -> None:
    """Wait for beat's first reconciler sweep: on a fresh Redis it finds no broker sentinel and
    republishes every queued job (apps.jobs.reconciler.jobs_repair_broker_loss), which would
    put a second message behind each job this benchmark had already submitted."""
    Stack._wait(
        lambda: any(stack.redis(0).scan_iter(match="*broker-sentinel")),
        120,
        "beat's reconciler did not sweep",
        interval=0.5,
    )


def workflows(stack: Stack, report: Report, sizes: Sizes) -> None:
    _first_sweep(stack)
    rounds = sizes.workflow_rounds
    _submit_and_read(stack, report, rounds, 40 * rounds)
    _discard_unrun(stack)
    stack.start_worker()
    _release(stack, report, max(1, rounds - 2))
    _drain(stack, report, max(1, rounds - 2))
    _finish_costs_row(stack, report, rounds)


def _finish_costs(repeats: int) -> dict[str, dict[str, Any]]:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection

    from apps.jobs import lifecycle
    from apps.jobs.models import Job
    from apps.workflows import services

    owner, _ = get_user_model().objects.get_or_create(username="bench-finish")
    noop = {"kind": "diagnostics.noop", "payload": {}}

    def start(jobs: list[dict[str, Any]]) -> dict[str, str]:
        workflow = services.workflow_submit(owner=owner, jobs=jobs, name="bench finish")
        return {
            str(ref): str(job_id)
            for job_id, ref in Job.objects.filter(workflow_id=workflow.id).values_list("id", "workflow_ref")
        }

    def finish(job_id: str) -> tuple[int, float]:
        claim = lifecycle.job_claim(job_id=job_id, worker="bench-finish@local")
        if claim is None:
            raise RuntimeError(f"job {job_id} could not be claimed")
        statements = 0

        def counting(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
            nonlocal statements
            statements += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(counting):
            t0 = time.perf_counter()
            if not lifecycle.job_succeed(claim=claim, result={}):
                raise RuntimeError(f"job {job_id} did not succeed")
            ms = (time.perf_counter() - t0) * 1000
        return statements, ms

    def star(k: int, size: int) -> list[str]:
        """`repeats` roots with k dependents each, padded to `size` jobs with a group."""
        jobs = []
        for r in range(repeats):
            jobs.append({"ref": f"r{r}", **noop})
            jobs += [{"ref": f"r{r}d{d}", **noop, "depends_on": [f"r{r}"]} for d in range(k)]
        jobs += [{"ref": f"p{i}", **noop} for i in range(size - len(jobs))]
        refs = start(jobs)
        return [refs[f"r{r}"] for r in range(repeats)]

    cases: dict[str, list[str]] = {
        "a plain job": [str(lifecycle.job_submit(owner=owner, **noop).id) for _ in range(repeats)],
    }
    group = start([{"ref": f"g{i}", **noop} for i in range(JOBS)])
    cases[f"a member with no dependents, {JOBS:,}-job workflow"] = [group[f"g{i}"] for i in range(repeats)]
    cases["a member with 1 dependent, 2-job workflow"] = [
        start([{"ref": "a", **noop}, {"ref": "b", **noop, "depends_on": ["a"]}])["a"] for _ in range(repeats)
    ]
    for k in DEPENDENTS:
        cases[f"a member with {k} dependent{'s' if k > 1 else ''}, {JOBS:,}-job workflow"] = star(k, JOBS)
    finish(str(lifecycle.job_submit(owner=owner, **noop).id))  # warm: prepared statements, imports
    result = {}
    for label, ids in cases.items():
        figures = [finish(job_id) for job_id in ids]
        result[label] = {
            "statements": int(statistics.median(f[0] for f in figures)),
            "ms": statistics.median(f[1] for f in figures),
        }
    return result


if __name__ == "__main__":
    if sys.argv[1:2] != ["finish-costs"]:
        raise SystemExit("usage: python -m bench.workflows finish-costs REPEATS")
    print(json.dumps(_finish_costs(int(sys.argv[2]))))

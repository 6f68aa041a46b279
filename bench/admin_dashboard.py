"""Benchmark 7: the admin's operations dashboard at a million jobs.

In bench/run (`bench/run dashboard`): the scale benchmark's million jobs (seeded here when
that benchmark has not run first), plus a busy last hour of attempts for the chart to count
(BUSY_PER_MINUTE a minute, on the newest jobs), then GET /admin/ops/dashboard/ timed in a
Django process of the platform's settings (Django's test client, a staff session: the
server's own time, no HTTP). As a module, `python -m bench.admin_dashboard REPEATS` is that
timer, printing one JSON line."""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta

from bench.benchmarks import Sizes
from bench.client import percentile
from bench.report import Report, fmt_ms
from bench.scale import _fill, _seed
from bench.stack import ROOT, Stack, log

NUMBER = 7
BUSY_PER_MINUTE = 1000  # attempts started a minute over the last hour: 60,000 for the chart to count
GOAL_MS = 1000.0

_BUSY_ATTEMPTS = {
    "job_id": "id",
    "number": "2",
    "worker": "'seed@bench'",
    "started_at": "started",
    "finished_at": "CASE WHEN n %% 50 = 0 THEN NULL ELSE started + interval '2 seconds' END",
    "duration_ms": "CASE WHEN n %% 50 = 0 THEN NULL ELSE 2000 END",
    "outcome": "CASE WHEN n %% 50 = 0 THEN 'running' WHEN n %% 12 = 0 THEN 'failed' ELSE 'succeeded' END",
    "error_type": "CASE WHEN n %% 12 = 0 THEN 'RuntimeError' ELSE '' END",
    "error_message": "''",
    "traceback": "''",
}


def _seed_busy_hour(stack: Stack, attempts: int) -> None:
    """A second attempt for each of the newest `attempts` finished jobs, spread over the last
    hour: 92% succeeded, 8% failed, 2% still running."""
    columns, values, _ = _fill(stack, "jobs_jobattempt", _BUSY_ATTEMPTS)
    stack.sql("DELETE FROM jobs_jobattempt WHERE number = 2 AND worker = 'seed@bench'")
    stack.sql(
        f"INSERT INTO jobs_jobattempt ({', '.join(columns)}) SELECT {', '.join(values)} FROM ("
        "SELECT id, row_number() OVER () AS n, now() - random() * interval '1 hour' AS started FROM ("
        "SELECT id FROM jobs_job WHERE status = 'succeeded' ORDER BY created_at DESC LIMIT %(n)s) AS newest"
        ") AS busy",
        {"n": attempts},
    )
    stack.sql("VACUUM (ANALYZE) jobs_jobattempt")


def dashboard(stack: Stack, report: Report, sizes: Sizes) -> None:
    rows = sizes.scale_rows
    have = stack.sql("SELECT count(*) FROM jobs_job")[0][0]
    if have < rows * 0.9:
        log(f"seeding {rows:,} jobs")
        _seed(stack, rows)
    busy = min(BUSY_PER_MINUTE * 60, rows // 10)
    _seed_busy_hour(stack, busy)
    total = stack.sql("SELECT count(*) FROM jobs_job")[0][0]
    attempts = stack.sql("SELECT count(*) FROM jobs_jobattempt")[0][0]

    env = {**stack.env, "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONPATH": str(ROOT)}
    repeats = max(5, min(sizes.scale_samples, 30))
    out = stack.python("bench.admin_dashboard", str(repeats), env=env, timeout=900)
    figures = json.loads(out.strip().splitlines()[-1])
    p50 = percentile(figures["ms"], 50)
    report.add(
        NUMBER,
        "GET /admin/ops/dashboard/ (a staff session)",
        f"p50 {fmt_ms(p50)}, p99 {fmt_ms(percentile(figures['ms'], 99))}",
        "< 1 s",
        p50 < GOAL_MS,
    )
    report.add(NUMBER, "its chart's two queries, in PostgreSQL", figures["chart_sql"])
    report.note(
        NUMBER,
        f"{total:,} jobs and {attempts:,} attempts; {busy:,} of the attempts in the last hour "
        f"({busy // 60:,} a minute: 92% succeeded, 8% failed, 2% still running). Timed {repeats} times after "
        f"one warm-up, in a Django process against the same database and Redis (Django's test client: the "
        f"server's time without HTTP). The page read {figures['queries']} queries; the chart's plans: "
        f"{figures['plans']}.",
    )


def _time_page(repeats: int) -> dict[str, object]:
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from apps.ops.selectors import attempts_per_minute_queries

    staff, _ = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(staff)
    url = "/admin/ops/dashboard/"
    response = client.get(url)  # warm
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}")
    queries = 0

    def counting(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counting):
        client.get(url)
    ms = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        client.get(url)
        ms.append((time.perf_counter() - t0) * 1000)

    first = timezone.now() - timedelta(minutes=59)
    plans, sql_ms = [], 0.0
    for queryset in attempts_per_minute_queries(first=first):
        sql, params = queryset.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
            plan = cursor.fetchone()[0][0]
        sql_ms += plan["Execution Time"]
        node = plan["Plan"]
        while node.get("Plans") and "Index Name" not in node:
            node = node["Plans"][0]
        plans.append(node.get("Node Type", "?") + (f" on {node['Index Name']}" if "Index Name" in node else ""))
    return {"ms": ms, "queries": queries, "chart_sql": f"{sql_ms:.1f} ms", "plans": "; ".join(plans)}


if __name__ == "__main__":
    print(json.dumps(_time_page(int(sys.argv[1]))))

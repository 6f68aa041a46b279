"""What the chaos suite measures: probes of PostgreSQL that survive the faults, beat's log,
the exactly-once check, and the figures each case reports (the servers and processes a case
breaks are in tests/chaos/servers.py).

Every process here is started by a test and stopped by it through its own process id (or, for
PostgreSQL, through pg_ctl on its own data directory); every wait has a deadline."""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from tests.processes import ARTIFACTS, ROOT, celery_env

FIGURES_FILE = ARTIFACTS / "chaos-figures.txt"
# The figures of this session, repeated in pytest's terminal summary (tests/chaos/conftest.py).
REPORTED: list[str] = []

TERMINAL = ("succeeded", "failed", "cancelled")


def now() -> datetime:
    return datetime.now(UTC)


def seconds_between(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else round((end - start).total_seconds(), 2)


# --- figures ---------------------------------------------------------------------------------


def report(case: str, **figures: object) -> str:
    """Print a case's recovery figures (`CHAOS <case>: ...`) and append them to
    $TEST_ARTIFACTS/chaos-figures.txt, for BENCHMARKS.md to quote."""
    line = f"CHAOS {case}: " + ", ".join(f"{k}={_figure(v)}" for k, v in figures.items())
    print(line, flush=True)
    REPORTED.append(line)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with open(FIGURES_FILE, "a") as f:
        f.write(f"{now().isoformat(timespec='seconds')} {line}\n")
    return line


def _figure(value: object) -> str:
    if value is None:
        return "never"
    if isinstance(value, float):
        return f"{value:.2f}s"
    return str(value)


def goal(value: float | None, limit: float) -> str:
    if value is None:
        return f"MISSED (<{limit:g}s; never happened)"
    return f"met (<{limit:g}s)" if value < limit else f"MISSED (<{limit:g}s)"


# --- the processes' environment ---------------------------------------------------------------


def kind_modules() -> str:
    modules = [m for m in os.environ.get("JOB_KIND_MODULES", "").split(",") if m]
    if not modules:
        modules = ["workers.kinds.diagnostics", "workers.kinds.images", "workers.kinds.webhooks"]
    if "tests.chaos.kinds" not in modules:
        modules.append("tests.chaos.kinds")
    return ",".join(modules)


def chaos_env(*, database_url: str, redis_url: str, ledger: Path, **extra: str) -> dict[str, str]:
    """Short timings, so each fault heals in seconds: leases of 4 s, a sweep every 0.5 s."""
    settings = {
        "RECONCILE_INTERVAL_SECONDS": "0.5",
        "JOB_LEASE_SECONDS": "4",
        "JOB_RETRY_BASE_SECONDS": "0.5",
        "JOB_RETRY_MAX_SECONDS": "2",
        "DIAGNOSTICS_UNSAFE": "1",
        "JOB_KIND_MODULES": kind_modules(),
        "CHAOS_LEDGER": str(ledger),
        "CONTROL_LEASE_SECONDS": "5",
        "CONTROL_ELECTION_INTERVAL_SECONDS": "1",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }
    settings.update(extra)
    return celery_env(database_url=database_url, redis_url=redis_url, **settings)


# --- jobs ------------------------------------------------------------------------------------


def effects(count: int, **payload: object) -> list[dict[str, Any]]:
    """`count` chaos.effect jobs (tests/chaos/kinds.py) with this payload."""
    return [{"kind": "chaos.effect", "payload": dict(payload)} for _ in range(count)]


def submit_here(owner: Any, jobs: list[dict[str, Any]]) -> list[str]:
    """Submit through `job_submit` in the test process (its database is the stack's)."""
    from apps.jobs.lifecycle import job_submit

    return [str(job_submit(owner=owner, kind=job["kind"], payload=job["payload"]).id) for job in jobs]


def terminate_connections(db_url: str) -> int:
    """What a database failover does to clients: every connection to the stack's database is
    ended (from a connection to the server's `postgres` database, so none is spared)."""
    database = db_url.rsplit("/", 1)[1].split("?")[0]
    server = db_url.rsplit("/", 1)[0] + "/postgres"
    rows = query(
        server,
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = %s AND pid <> pg_backend_pid()",
        [database],
    )
    return int(rows[0][0])


# --- PostgreSQL probes (a fresh connection each time: they outlive every fault) ---------------


def query(url: str, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def try_query(url: str, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]] | None:
    """None while PostgreSQL cannot answer (stopped, restarting, cut off)."""
    try:
        return query(url, sql, params)
    except psycopg.OperationalError:
        return None


def job_statuses(url: str, ids: Iterable[str]) -> dict[str, str] | None:
    rows = try_query(url, "SELECT id::text, status FROM jobs_job WHERE id = ANY(%s::uuid[])", [list(ids)])
    return None if rows is None else dict(rows)


def all_finished_at(url: str, ids: Sequence[str]) -> datetime | None:
    """When the last of the jobs ended, once every one of them has."""
    rows = try_query(url, "SELECT status, finished_at FROM jobs_job WHERE id = ANY(%s::uuid[])", [list(ids)])
    if rows is None or len(rows) < len(ids) or any(status not in TERMINAL for status, _ in rows):
        return None
    return max((finished for _, finished in rows if finished is not None), default=now())


def first_finished_after(url: str, ids: Sequence[str], moment: datetime) -> datetime | None:
    rows = try_query(
        url,
        "SELECT min(finished_at) FROM jobs_job WHERE id = ANY(%s::uuid[]) AND finished_at > %s",
        [list(ids), moment],
    )
    return None if not rows else rows[0][0]


def count_status(url: str, ids: Sequence[str]) -> Counter[str]:
    return Counter((job_statuses(url, ids) or {}).values())


@dataclass
class ControlLoop:
    """The `ops_controlloop` row named 'beat' (leader election, apps.ops.models.ControlLoop)."""

    leader: str
    epoch: int
    lease_expires_at: datetime | None
    last_sweep_at: datetime | None

    @property
    def leader_pid(self) -> int | None:
        _, _, pid = self.leader.rpartition(":")
        return int(pid) if pid.isdigit() else None


def control_loop(url: str) -> ControlLoop | None:
    """None when the row (or the table: election not deployed) is not there, or PostgreSQL is away."""
    try:
        rows = query(
            url, "SELECT leader, epoch, lease_expires_at, last_sweep_at FROM ops_controlloop WHERE name = %s", ["beat"]
        )
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return None
    return ControlLoop(*rows[0]) if rows else None


# --- beat's log ----------------------------------------------------------------------------------

_SWEEP = re.compile(r"platform\.reconcile: (\{.*?\}) in ")


def log_entries(path: Path) -> list[dict[str, Any]]:
    """The JSON lines of a process's log (anything else, e.g. Celery's banner, is skipped)."""
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
    return entries


def sweeps(path: Path) -> list[tuple[datetime, dict[str, int]]]:
    """The reconciler's sweeps that beat logged (it logs those that did something or failed:
    a step that failed shows as -1)."""
    found = []
    for entry in log_entries(path):
        match = _SWEEP.search(entry.get("message", ""))
        if match:
            with contextlib.suppress(ValueError, SyntaxError):
                found.append((datetime.fromisoformat(entry["time"]), ast.literal_eval(match.group(1))))
    return found


def successful_sweep_after(db_url: str, beat_logs: Iterable[Path], moment: datetime) -> datetime | None:
    """The first successful reconciler sweep after `moment`: the control loop's last_sweep_at
    when the election is deployed, else the first logged sweep without a failed step (a sweep
    with nothing to do is not logged, so this one may come a little late)."""
    candidates = []
    row = control_loop(db_url)
    if row is not None and row.last_sweep_at is not None and row.last_sweep_at > moment:
        candidates.append(row.last_sweep_at)
    for path in beat_logs:
        candidates += [t for t, figures in sweeps(path) if t > moment and all(v >= 0 for v in figures.values())]
    return min(candidates, default=None)


def log_lines(path: Path, *needles: str, last: int = 6) -> str:
    """The last lines of a log that contain any of `needles`: the evidence a failure quotes."""
    lines = [line for line in path.read_text(errors="replace").splitlines() if any(n in line for n in needles)]
    return "\n".join(line[:400] for line in lines[-last:]) or "(none)"


# --- waiting for several things at once ----------------------------------------------------


def milestones(
    checks: dict[str, Callable[[], datetime | None]], *, since: datetime, timeout: float, interval: float = 0.1
) -> dict[str, float | None]:
    """Poll every check until each has happened or the deadline passes; each check returns the
    moment its event happened (from PostgreSQL or a log), reported as seconds after `since`."""
    found: dict[str, float | None] = dict.fromkeys(checks)
    deadline = time.monotonic() + timeout
    while True:
        for name, check in checks.items():
            if found[name] is None:
                moment = check()
                if moment is not None:
                    found[name] = seconds_between(since, moment)
        if all(v is not None for v in found.values()) or time.monotonic() > deadline:
            return found
        time.sleep(interval)


# --- exactly once ------------------------------------------------------------------------------


def ledger_counts(path: Path) -> Counter[str]:
    if not path.exists():
        return Counter()
    return Counter(line.split()[0] for line in path.read_text().splitlines() if line.strip())


@dataclass
class Outcome:
    """What PostgreSQL and the ledger say about a set of accepted jobs."""

    total: int
    statuses: Counter[str]
    attempts: Counter[str]
    problems: list[str] = field(default_factory=list)

    def describe(self) -> str:
        head = f"{len(self.problems)} of {self.total} accepted jobs did not end exactly once"
        return head + " (statuses " + str(dict(self.statuses)) + "):\n  " + "\n  ".join(self.problems[:15])


def exactly_once(db_url: str, ids: Sequence[str], ledger: Path) -> Outcome:
    """Each job succeeded, with exactly one succeeded attempt and exactly one effect in the ledger."""
    statuses = dict(query(db_url, "SELECT id::text, status FROM jobs_job WHERE id = ANY(%s::uuid[])", [list(ids)]))
    outcomes: dict[str, list[str]] = defaultdict(list)
    for job_id, outcome in query(
        db_url,
        "SELECT job_id::text, outcome FROM jobs_jobattempt WHERE job_id = ANY(%s::uuid[]) ORDER BY number",
        [list(ids)],
    ):
        outcomes[job_id].append(outcome)
    effects = ledger_counts(ledger)
    result = Outcome(
        total=len(ids),
        statuses=Counter(statuses.get(i, "missing") for i in ids),
        attempts=Counter(o for i in ids for o in outcomes[i]),
    )
    for job_id in ids:
        status, attempts, applied = statuses.get(job_id, "missing (lost)"), outcomes[job_id], effects[job_id]
        if status != "succeeded" or attempts.count("succeeded") != 1 or applied != 1:
            result.problems.append(f"job {job_id}: {status}, attempts {attempts}, effect applied {applied} time(s)")
    return result


def submit(env: dict[str, str], jobs: list[dict[str, Any]], *, owner: str = "chaos-client") -> list[str]:
    """Submit jobs through `job_submit` in a process of its own (tests/chaos/submit.py), for a
    stack on a database the test process has no ORM connection to."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.chaos.submit"],
        cwd=ROOT,
        env=env,
        input=json.dumps({"owner": owner, "jobs": jobs}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"submitting failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return list(json.loads(done.stdout.strip().splitlines()[-1]))

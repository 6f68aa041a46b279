"""The stack the benchmarks run against, brought up the way production runs it: a private
redis-server on a free port, a fresh PostgreSQL database `bench_<random>` on 127.0.0.1:5432,
the Procfile's release step, then web, worker and beat exactly as the Procfile says.

Every process runs in its own process group, and `close()` stops each group it started (and
drops the database) however the run ends: normally, on an error, or on Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench.client import Client

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
ACTIVE = ("queued", "running", "retrying")

# The benchmark's own settings for the platform; everything else keeps its default.
BENCH_ENV = {
    "DEBUG": "0",
    "ALLOWED_HOSTS": "*",
    "LOG_LEVEL": "WARNING",
    "WEB_BIND": "127.0.0.1",  # traffic stays on this machine
    # Admission control and the request throttle must not refuse the load we send.
    "API_THROTTLE_RATE": "1000000/min",
    "QUEUE_MAX_DEPTH": "1000000",
    "CLIENT_MAX_IN_FLIGHT": "1000000",
}


class BenchError(Exception):
    """A benchmark could not produce its figure; the report says why and the run goes on."""


def log(message: str) -> None:
    print(f"  · {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def platform_variables() -> set[str]:
    """Every variable the platform reads (.env.example), so none leaks in from the caller's
    shell: the benchmark runs the platform's defaults plus BENCH_ENV and --env."""
    names = {"DJANGO_SETTINGS_MODULE", "PORT", "DATABASE_URL", "REDIS_URL", "SECRET_KEY"}
    example = ROOT / ".env.example"
    if example.is_file():
        for line in example.read_text().splitlines():
            match = re.match(r"^\s*#?\s*([A-Z][A-Z0-9_]*)=", line)
            if match:
                names.add(match.group(1))
    return names


def read_procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line.strip())
        if match:
            entries[match.group(1)] = match.group(2)
    for needed in ("release", "web", "worker", "beat"):
        if needed not in entries:
            raise BenchError(f"the Procfile has no {needed} entry")
    return entries


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pgid(self) -> int:
        return self.popen.pid  # started with start_new_session: it leads its own group


@dataclass
class Stack:
    log_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    worker: Process | None = None
    db: str = ""
    redis_port: int = 0
    port: int = 0
    token: str = ""
    env: dict[str, str] = field(default_factory=dict)
    procfile: dict[str, str] = field(default_factory=dict)
    _redis: Process | None = None
    _sql: Any = None
    _dcr_ready: bool = False
    _worker_count: int = 0

    # --- bring up, tear down --------------------------------------------------------------

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procfile = read_procfile()
        self.redis_port = free_port()
        self._redis = self.spawn(
            "redis",
            f"redis-server --bind 127.0.0.1 --port {self.redis_port} --save '' --appendonly no",
            env=dict(os.environ),
        )
        self._wait(lambda: self.redis(0).ping(), 10, "the private redis-server did not answer")
        self.db = "bench_" + secrets.token_hex(4)
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.db}"')
        log(f"database {self.db}, redis-server on port {self.redis_port}, logs in {self.log_dir}")
        self.port = free_port()
        skip = platform_variables()
        self.env = {k: v for k, v in os.environ.items() if k not in skip}
        self.env.update(
            {
                "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                "VIRTUAL_ENV": str(ROOT / ".venv"),
                "PYTHONUNBUFFERED": "1",
                "PORT": str(self.port),
                "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{self.db}",
                "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
                "SECRET_KEY": "bench-" + secrets.token_urlsafe(32),
                **BENCH_ENV,
                **self.extra_env,
            }
        )
        log("release: " + self.procfile["release"])
        self.run_shell(self.procfile["release"], timeout=600)
        self.token = self.manage("issue_token", "bench").strip().splitlines()[-1].strip()
        self.start_web()
        self.spawn("beat", self.procfile["beat"])

    def close(self) -> None:
        """Stop every process group this run started, then drop its database. Idempotent."""
        for process in reversed(list(self.processes)):
            self.stop(process, timeout=15)
        self.worker = None
        if self._sql is not None:
            with contextlib.suppress(Exception):
                self._sql.close()
            self._sql = None
        if self.db:
            try:
                with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
            except Exception as exc:
                print(f"could not drop database {self.db}: {exc}", file=sys.stderr)
            self.db = ""

    # --- processes ------------------------------------------------------------------------

    def spawn(self, name: str, command: str, env: dict[str, str] | None = None) -> Process:
        """Run a shell command line (a Procfile entry) in its own process group, output to a log."""
        path = self.log_dir / f"{name}.log"
        with open(path, "a") as out:
            popen = subprocess.Popen(
                ["bash", "-c", "exec " + command],
                cwd=ROOT,
                env=env if env is not None else self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = Process(name, popen, path)
        self.processes.append(process)
        return process

    def stop(self, process: Process, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        """Signal a process's whole group and wait; SIGKILL the group when it lingers."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pgid, sig)
        try:
            process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pgid, signal.SIGKILL)
            process.popen.wait(timeout=10)
        # Children that outlived the group leader (a pool process) go with the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pgid, signal.SIGKILL)
        if process in self.processes:
            self.processes.remove(process)
        if process is self.worker:
            self.worker = None

    def run_shell(self, command: str, timeout: float = 300, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            ["bash", "-c", "exec " + command],
            cwd=ROOT,
            env=env or self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
        if result.returncode:
            raise BenchError(f"`{command}` failed ({result.returncode}): {result.stderr.strip()[-600:]}")
        return result.stdout

    def manage(self, *args: str, timeout: float = 300) -> str:
        return self.run_shell(" ".join(["python", "manage.py", *args]), timeout=timeout)

    def python(self, module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 600) -> str:
        """Run one of bench's modules with the project's Python and the platform's environment."""
        return self.run_shell(" ".join([str(PYTHON), "-m", module, *args]), timeout=timeout, env=env)

    def start_web(self) -> None:
        self.spawn("web", self.procfile["web"])
        self._wait(lambda: self.client().request("GET", "/healthz")[0] == 200, 60, "web did not answer /healthz")

    def start_worker(self, *, warm: bool = True, env: dict[str, str] | None = None) -> Process:
        """A worker exactly as the Procfile runs it (`env` adds variables); `warm` waits until
        it has run one job."""
        if self.worker is not None:
            return self.worker
        self._worker_count += 1
        self.worker = self.spawn(
            f"worker{self._worker_count}", self.procfile["worker"], env={**self.env, **(env or {})}
        )
        if warm:
            for _ in range(4):  # both pool processes have run a job, the task imports are done
                job = self.submit("diagnostics.noop")
                self.wait_terminal([job["id"]], 90)
        return self.worker

    def drain_backlog(self) -> None:
        """Let a worker run whatever jobs wait (a backlog an earlier step left), then leave
        the worker as it was."""
        backlog = self.active_jobs()
        if not backlog:
            return
        had_worker = self.worker is not None
        self.start_worker(warm=False)
        self.wait_idle(120 + backlog / 10)
        if not had_worker:
            self.stop_worker()

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.stop(self.worker)

    @property
    def task_events(self) -> bool:
        """Whether the platform's worker sends task events (WORKER_TASK_EVENTS, on by default)."""
        return self.env.get("WORKER_TASK_EVENTS", "1").strip().lower() not in {"0", "false", "no", "off"}

    @property
    def worker_concurrency(self) -> int:
        return int(self.env.get("WORKER_CONCURRENCY") or 2)  # the Procfile's default

    # --- Redis and PostgreSQL -------------------------------------------------------------

    def redis(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.redis_port, db=db, socket_timeout=10)

    def redis_url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/{db}"

    def sql(self, query: str, params: Any = None) -> list[tuple]:
        if self._sql is None or self._sql.closed:
            self._sql = psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={self.db}", autocommit=True)
        cursor = self._sql.execute(query, params)
        return cursor.fetchall() if cursor.description else []

    def active_jobs(self) -> int:
        return int(self.sql("SELECT count(*) FROM jobs_job WHERE status = ANY(%s)", [list(ACTIVE)])[0][0])

    def wait_idle(self, seconds: float) -> None:
        """Wait until no job is queued, running or retrying (a worker must be running)."""
        self._wait(lambda: self.active_jobs() == 0, seconds, "jobs were still active from an earlier step")

    def dcr_migrate(self) -> None:
        """django-celery-results' tables, migrated into the bench database by its own settings."""
        if not self._dcr_ready:
            env = {**self.env, "DJANGO_SETTINGS_MODULE": "bench.dcr_settings", "PYTHONPATH": str(ROOT)}
            self.run_shell(f"{PYTHON} -m django migrate --noinput", env=env)
            self._dcr_ready = True

    # --- HTTP -----------------------------------------------------------------------------

    def client(self) -> Client:
        return Client(self.port, self.token)

    def submit(self, kind: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        status, data = self.client().json("POST", "/api/v1/jobs", {"kind": kind, "payload": payload or {}})
        if status != 202:
            raise BenchError(f"POST /api/v1/jobs answered {status}: {str(data)[:300]}")
        return data

    def wait_terminal(self, ids: list[str], seconds: float) -> None:
        def done() -> bool:
            rows = self.sql(
                "SELECT count(*) FROM jobs_job WHERE id = ANY(%s::uuid[]) AND status <> ALL(%s)", [ids, list(ACTIVE)]
            )
            return rows[0][0] == len(ids)

        self._wait(done, seconds, f"{len(ids)} job(s) did not finish")

    @staticmethod
    def _wait(check: Any, seconds: float, message: str, interval: float = 0.1) -> None:
        deadline = time.monotonic() + seconds
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except Exception as exc:  # not up yet
                last = exc
            time.sleep(interval)
        raise BenchError(f"{message} within {seconds:g} s" + (f" ({last})" if last else ""))

"""Real processes for integration and fault tests: a private redis-server, Celery workers
and beat. Every wait has a deadline; every process is stopped by its own process id."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], *, timeout: float, interval: float = 0.1, what: str = "") -> object:
    """Poll until predicate() is truthy; fail the test with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


class RedisServer:
    """A redis-server of the test's own, on a free port, which a test may flush or stop."""

    def __init__(self) -> None:
        if not shutil.which("redis-server"):
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self.ping, timeout=10, what=f"redis-server on port {self.port}")
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


class CeleryProcess:
    """`celery worker` or `celery beat`, run as the Procfile runs them, against the test
    database and the private Redis."""

    def __init__(self, argv: list[str], env: dict[str, str], name: str) -> None:
        self.name = name
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / f"{name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, marker: str, timeout: float = 45) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            return marker in self.log()

        wait_for(ready, timeout=timeout, interval=0.2, what=f"{self.name} to be ready")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the main process and its pool children)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.kill(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
                self.proc.wait(timeout=10)
        # Pool children outlive a killed parent; take the group down for good.
        self.kill(signal.SIGKILL)
        self._log.close()


def procfile_argv(process: str, **variables: str) -> list[str]:
    """The Procfile's line for `process`, as honcho would run it: each `${NAME:-default}` is
    the value given here, else the default; the program runs from this interpreter."""
    (line,) = [ln for ln in (ROOT / "Procfile").read_text().splitlines() if ln.startswith(f"{process}:")]
    command = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: variables.get(m.group(1), m.group(2)), line.split(":", 1)[1])
    program, *args = shlex.split(command)
    return [sys.executable, "-m", program, *args]


def celery_env(*, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DATABASE_URL": database_url, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def start_worker(
    env: dict[str, str],
    *,
    concurrency: int = 2,
    # The Procfile's default: its own queues, then the I/O ones (taken when its own are empty).
    queues: str = "high,default,low,io_high,io_default,io_low",
    name: str | None = None,
    extra: list[str] | None = None,
    prefix: list[str] | None = None,
) -> CeleryProcess:
    """`prefix` runs the worker under another command, e.g. `ip netns exec NAME` (which execs
    it: the process id, and so the process group the test stops, stay the worker's)."""
    name = name or f"worker-{uuid.uuid4().hex[:6]}"
    argv = [
        *(prefix or []),
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--loglevel=INFO",
        "-Q",
        queues,
        f"--concurrency={concurrency}",
        "--prefetch-multiplier=1",
        "-n",
        f"{name}@%h",
        "--without-mingle",
        "--without-gossip",
        *(extra or []),
    ]
    worker = CeleryProcess(argv, env, name)
    worker.wait_ready("ready.")
    return worker


def start_worker_io(env: dict[str, str], *, concurrency: int = 32, name: str | None = None) -> CeleryProcess:
    """The Procfile's `worker-io` line as it stands (the I/O queues, a thread pool), with a
    name of the test's own (the last -n wins) and `concurrency` slots."""
    name = name or f"worker-io-{uuid.uuid4().hex[:6]}"
    argv = [*procfile_argv("worker-io", WORKER_IO_CONCURRENCY=str(concurrency)), "-n", f"{name}@%h"]
    worker = CeleryProcess(argv, env, name)
    worker.wait_ready("ready.")
    return worker


def start_beat(env: dict[str, str], *, name: str | None = None) -> CeleryProcess:
    schedule = Path(tempfile.mkdtemp()) / "beat-schedule"
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "beat",
        "--loglevel=INFO",
        "-S",
        "workers.beat:InlineScheduler",
        "-s",
        str(schedule),
    ]
    beat = CeleryProcess(argv, env, name or f"beat-{uuid.uuid4().hex[:6]}")
    beat.wait_ready("beat: Starting...")
    return beat

"""The servers and processes a chaos case may break: a PostgreSQL of the test's own (which a
case may stop), a redis-server that can listen on a veth address, a network namespace joined
to the host by a veth pair (which a case may cut), and the web process.

Every process here is started by a test and stopped by it through its own process id (or, for
PostgreSQL, through pg_ctl on its own data directory); every wait has a deadline."""

from __future__ import annotations

import contextlib
import glob
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import psycopg

from tests.processes import ARTIFACTS, ROOT, CeleryProcess, RedisServer, free_port, procfile_argv, wait_for

# --- a PostgreSQL of the test's own ------------------------------------------------------------


def pg_bin(program: str) -> str:
    """The installed server's programs (Debian keeps them out of PATH), newest version first."""
    found = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{program}"), key=lambda p: int(Path(p).parts[-3].split(".")[0])
    )
    if not found:
        raise RuntimeError(f"{program} is not installed (apt-get install postgresql)")
    return found[-1]


class OwnPostgres:
    """A PostgreSQL cluster in a temporary folder, on a free port, which a test may stop and
    start without touching the machine's server. initdb refuses to run as root, so as root it
    runs (and the server with it) as the `postgres` user. Trust authentication, TCP only on the
    addresses given; fsync off (a stopped server is not a lost machine: its writes are in the
    page cache), synchronous commit on (an accepted job is in the WAL)."""

    def __init__(self, *, listen: Sequence[str] = ("127.0.0.1",), trusted: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.listen = list(listen)
        self.trusted = list(trusted)
        self.dir = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        self.data = self.dir / "data"
        self.logfile = self.dir / "server.log"
        self.database = "chaos"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *argv: str, timeout: float = 60) -> str:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def url(self, host: str = "127.0.0.1", database: str | None = None) -> str:
        return f"postgres://postgres@{host}:{self.port}/{database or self.database}"

    def init(self) -> OwnPostgres:
        self._run(pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        with open(self.data / "pg_hba.conf", "a") as hba:
            for network in self.trusted:
                hba.write(f"host all all {network} trust\n")
        return self

    def start(self) -> OwnPostgres:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses='{','.join(self.listen)}' "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "60", "-o", options, "start"
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        status = subprocess.run(
            [*prefix, pg_bin("pg_ctl"), "-D", str(self.data), "status"], capture_output=True, timeout=30
        )
        return status.returncode == 0

    def create_database(self) -> None:
        with psycopg.connect(self.url(database="postgres"), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{self.database}"')

    def migrate(self) -> None:
        env = {**os.environ, "DATABASE_URL": self.url()}
        done = subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if done.returncode != 0:
            raise RuntimeError(f"migrate failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            if self.data.exists() and self.running():
                self.stop("immediate")
        with contextlib.suppress(OSError):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.logfile, ARTIFACTS / f"postgres-{self.port}.log")
        shutil.rmtree(self.dir, ignore_errors=True)


class BoundRedis(RedisServer):
    """A private redis-server listening on more than loopback (the host end of a veth pair)."""

    def __init__(self, bind: Sequence[str]) -> None:
        super().__init__()
        self.bind = list(bind)

    def start(self) -> BoundRedis:
        argv = ["redis-server", "--bind", *self.bind, "--port", str(self.port), "--protected-mode", "no"]
        self.proc = subprocess.Popen(
            [*argv, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self.ping, timeout=10, what=f"redis-server on port {self.port}")
        return self

    def url_for(self, host: str) -> str:
        return f"redis://{host}:{self.port}/0"


# --- a network namespace joined to the host by a veth pair ------------------------------------


def _ip(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)} failed: {done.stderr.strip()}")
    return done


class Partition:
    """A network namespace for one "host", joined to this machine by a veth pair on a /30 of
    its own (10.x.y.0/30, chosen to clash with no address or route here). Processes started
    with `prefix` run inside it and reach the host only through the pair: `cut` takes the pair
    down, `heal` brings it back."""

    def __init__(self) -> None:
        if not shutil.which("ip"):
            raise RuntimeError("ip is not installed (apt-get install iproute2)")
        tag = f"{os.getpid() % 10000:04d}{random.randrange(100):02d}"
        self.namespace = f"chaos-{tag}"
        self.host_end = f"chv{tag}h"  # interface names have at most 15 characters
        self.ns_end = f"chv{tag}n"
        self.host_ip, self.ns_ip = self._free_subnet()
        self.created = False

    @staticmethod
    def _free_subnet() -> tuple[str, str]:
        taken = _ip("-4", "-o", "addr").stdout + _ip("-4", "route", "show", "table", "all").stdout
        for _ in range(200):
            net = f"10.{random.randrange(200, 255)}.{random.randrange(256)}"
            if f"{net}." not in taken:
                base = 4 * random.randrange(64)
                return f"{net}.{base + 1}", f"{net}.{base + 2}"
        raise RuntimeError("no free 10.x.y.0/30 for the veth pair")

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace]

    def create(self) -> Partition:
        self.created = True
        _ip("netns", "add", self.namespace)
        _ip("link", "add", self.host_end, "type", "veth", "peer", "name", self.ns_end)
        _ip("link", "set", self.ns_end, "netns", self.namespace)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_end)
        _ip("link", "set", self.host_end, "up")
        _ip("netns", "exec", self.namespace, "ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_end)
        _ip("netns", "exec", self.namespace, "ip", "link", "set", self.ns_end, "up")
        _ip("netns", "exec", self.namespace, "ip", "link", "set", "lo", "up")
        return self

    def reaches(self, port: int) -> bool:
        """Whether a process inside the namespace can open a TCP connection to the host end."""
        probe = f"import socket; socket.create_connection(('{self.host_ip}', {port}), timeout=1).close()"
        done = subprocess.run([*self.prefix, sys.executable, "-c", probe], capture_output=True, timeout=30)
        return done.returncode == 0

    def cut(self) -> None:
        """The namespace's end goes down. Not the host's: its route to the pair would go with
        it, and the host's replies would leave by the default route instead of being dropped."""
        _ip("netns", "exec", self.namespace, "ip", "link", "set", self.ns_end, "down")

    def heal(self) -> None:
        _ip("netns", "exec", self.namespace, "ip", "link", "set", self.ns_end, "up")

    def destroy(self) -> None:
        if not self.created:
            return
        _ip("link", "del", self.host_end, check=False)  # takes its peer along
        _ip("netns", "del", self.namespace, check=False)


# --- the web process -----------------------------------------------------------------------------


def web_argv(port: int) -> list[str]:
    """The Procfile's `web` line, on loopback and a port of the test's own."""
    return procfile_argv("web", WEB_BIND="127.0.0.1", PORT=str(port), WEB_CONCURRENCY="2", WEB_THREADS="4")


def http_status(url: str, timeout: float = 2) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def start_web(env: dict[str, str], *, port: int, name: str) -> CeleryProcess:
    """gunicorn as the Procfile runs it, ready once /healthz answers."""
    web = CeleryProcess(web_argv(port), env, name)

    def ready() -> bool:
        if web.proc.poll() is not None:
            raise AssertionError(f"{name} exited with {web.proc.returncode}:\n{web.log()[-3000:]}")
        return http_status(f"http://127.0.0.1:{port}/healthz") == 200

    wait_for(ready, timeout=60, interval=0.2, what=f"{name} to answer /healthz")
    return web


def kill_group(process: CeleryProcess) -> None:
    """kill -9 a process and everything in its process group (gunicorn's or Celery's children)."""
    process.kill(signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.proc.wait(timeout=10)

"""Chaos: Redis under Sentinel loses its master mid-run.

A master, a replica and three sentinels of the test's own, on free ports. The platform (a
worker, beat, and this process's publisher) reaches Redis only through the sentinels
(REDIS_URL=sentinel://...). With a backlog draining, the master's machine dies: the master
and the sentinel beside it (the first one the URL lists) are killed with SIGKILL. The two
other sentinels promote the replica, and every accepted job, those submitted right after the
kill included, still ends `succeeded` with exactly one succeeded attempt and one effect."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.cache import caches

from apps.core import redis as platform_redis
from apps.jobs.models import Job
from tests.chaos.infra import (
    all_finished_at,
    count_status,
    effects,
    exactly_once,
    first_finished_after,
    milestones,
    now,
    report,
)
from tests.conftest import _reset_publisher, database_url
from tests.processes import ARTIFACTS, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

MASTER_NAME = "mymaster"
DOWN_AFTER_MS = 1000  # a sentinel calls the master down after this long without an answer
FAILOVER_TIMEOUT_MS = 3000


class RedisProcess:
    """A redis-server (a data node or a sentinel) started by the test, stopped by its own pid."""

    def __init__(self, name: str, argv: list[str], port: int, folder: Path) -> None:
        self.name, self.port = name, port
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.log_path = ARTIFACTS / f"sentinel-{name}.log"
        with self.log_path.open("w") as log:
            # In the temp folder: a replica keeps the RDB file its master sends it in its cwd.
            self.proc = subprocess.Popen(argv, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)
        try:
            wait_for(self.answers, timeout=10, what=f"redis-server {name} on port {port}")
        except AssertionError:
            self.kill()
            raise

    def answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}: see {self.log_path}")
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.client.close()


@dataclasses.dataclass
class SentinelStack:
    master: RedisProcess
    replica: RedisProcess
    sentinels: list[RedisProcess]

    @property
    def url(self) -> str:
        # The form kombu's sentinel transport reads: one entry per sentinel, the database last.
        return ";".join(f"sentinel://127.0.0.1:{s.port}" for s in self.sentinels) + "/0"

    def lose_the_masters_machine(self) -> None:
        """The master and the first sentinel listed, as when the machine they share dies:
        every client then meets a dead sentinel first."""
        self.master.kill()
        self.sentinels[0].kill()

    def master_port(self) -> int | None:
        """The master's port as a majority of the sentinels name it (None while they disagree)."""
        ports = []
        for sentinel in self.sentinels:
            if sentinel.proc.poll() is not None:
                continue
            with contextlib.suppress(redis.RedisError):
                address = sentinel.client.sentinel_get_master_addr_by_name(MASTER_NAME)
                ports.append(int(address[1]) if address else None)
        best = max(set(ports), key=ports.count, default=None)
        return best if ports.count(best) >= 2 else None

    def ready(self) -> bool:
        """The replica is in sync, and every sentinel knows it and the two other sentinels
        (they find both only through the master, within a few seconds)."""
        info = self.replica.client.info("replication")
        if info.get("master_link_status") != "up":
            return False
        for sentinel in self.sentinels:
            state = sentinel.client.sentinel_master(MASTER_NAME)
            if state.get("num-slaves", 0) < 1 or state.get("num-other-sentinels", 0) < 2:
                return False
        return True


def _data_node(name: str, folder: Path, *extra: str) -> RedisProcess:
    port = free_port()
    argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    return RedisProcess(name, [*argv, "--dir", str(folder), "--dbfilename", f"{name}.rdb", *extra], port, folder)


def _sentinel(name: str, folder: Path, master_port: int) -> RedisProcess:
    # Sentinel rewrites its config file (what it learns: replicas, peers, epochs), so each
    # one gets a file of its own.
    port = free_port()
    conf = folder / f"{name}.conf"
    conf.write_text(
        f"port {port}\n"
        "bind 127.0.0.1\n"
        f"dir {folder}\n"
        f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n"
        f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
        f"sentinel parallel-syncs {MASTER_NAME} 1\n"
    )
    return RedisProcess(name, ["redis-server", str(conf), "--sentinel"], port, folder)


@pytest.fixture
def sentinel_stack() -> Iterator[SentinelStack]:
    with tempfile.TemporaryDirectory(prefix="sentinel-") as name:
        folder = Path(name)
        started: list[RedisProcess] = []
        try:
            master = _data_node("master", folder)
            started.append(master)
            started.append(_data_node("replica", folder, "--replicaof", "127.0.0.1", str(master.port)))
            for n in range(3):
                started.append(_sentinel(f"sentinel{n + 1}", folder, master.port))
            stack = SentinelStack(master, started[1], started[2:])
            wait_for(stack.ready, timeout=20, interval=0.2, what="the replica in sync and the sentinels acquainted")
            yield stack
        finally:
            for process in reversed(started):  # before their folder goes
                process.kill()


def _failover(stack: SentinelStack) -> float:
    """Kill the master and its sentinel; seconds until the two others name the replica."""
    old = stack.master.port
    killed = time.monotonic()
    stack.lose_the_masters_machine()
    wait_for(lambda: stack.master_port() not in (None, old), timeout=30, interval=0.05, what="the failover")
    assert stack.master_port() == stack.replica.port
    return time.monotonic() - killed


def test_the_platform_client_and_the_cache_find_the_new_master_after_a_failover(sentinel_stack, settings):
    settings.REDIS_URL = sentinel_stack.url
    # Django resets its cache handlers when CACHES changes (django.test.signals).
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": sentinel_stack.url}}
    platform_redis.reset_redis_client()
    try:
        client, cache = platform_redis.redis_client(), caches["default"]
        client.set("before", "1")
        cache.set("cached", 1, timeout=60)
        wait_for(lambda: sentinel_stack.replica.client.get("before"), timeout=5, what="the writes replicated")

        seconds = _failover(sentinel_stack)

        def works() -> bool:
            try:
                return client.get("before") == b"1" and bool(client.set("after", "1"))
            except redis.ConnectionError:
                return False  # fails fast while the sentinels still name the dead master

        wait_for(works, timeout=10, interval=0.1, what="the platform client on the new master")
        assert client.connection_pool.get_master_address() == ("127.0.0.1", sentinel_stack.replica.port)
        assert cache.get("cached") == 1
        cache.set("cached", 2, timeout=60)
        assert sentinel_stack.replica.client.exists(cache.make_key("cached"))
        print(f"\nsentinel failover: {seconds:.2f} s from the master's kill to the replica's promotion")
    finally:
        platform_redis.reset_redis_client()


def _submit(api: Any, jobs: list[dict[str, Any]]) -> list[str]:
    """A batch through the API; the ids of the jobs it accepted (none when it answered 429
    or 503, as it may while the sentinels have no master to name)."""
    response = api.post("/api/v1/jobs/batch", {"jobs": jobs}, format="json")
    assert response.status_code in (202, 429, 503), response.content
    return [job["id"] for job in response.json()["jobs"]] if response.status_code == 202 else []


def test_every_accepted_job_ends_once_when_the_redis_master_is_killed_mid_run(
    platform, api, redis_server, sentinel_stack, stacks
):
    db, url = database_url(), sentinel_stack.url
    stack = stacks("redis-sentinel", database_url=db, redis_url=url)
    _reset_publisher(url)  # this process submits, and publishes, through the sentinels too
    try:
        stack.worker("worker", concurrency=2, REDIS_SENTINEL_MASTER=MASTER_NAME)
        stack.beat(REDIS_SENTINEL_MASTER=MASTER_NAME)

        ids = _submit(api, effects(60, seconds=0.1))
        assert len(ids) == 60
        wait_for(lambda: count_status(db, ids)["succeeded"] >= 10, timeout=30, what="the backlog draining")
        at_kill = count_status(db, ids)
        killed_at, killed = now(), time.monotonic()
        sentinel_stack.lose_the_masters_machine()
        # Submitted while the sentinels still name the dead master: accepted into PostgreSQL,
        # their publish fails fast, and the relay publishes them to the new master.
        during = _submit(api, effects(20, seconds=0.1))
        ids += during

        wait_for(
            lambda: sentinel_stack.master_port() == sentinel_stack.replica.port,
            timeout=30,
            interval=0.05,
            what="the sentinels to promote the replica",
        )
        failover = round(time.monotonic() - killed, 2)
        promoted_at = now()
        found = milestones(
            {
                "first_done": lambda: first_finished_after(db, ids, promoted_at),
                "all_done": lambda: all_finished_at(db, ids),
            },
            since=killed_at,
            timeout=40,
        )
        outcome = exactly_once(db, ids, stack.ledger)
        stuck = Job.objects.filter(id__in=ids, status="queued")
        report(
            "redis-sentinel",
            jobs=len(ids),
            accepted_during_failover=len(during),
            at_kill=dict(at_kill),
            kill_to_failover=failover,
            kill_to_first_job_done_after_failover=found["first_done"],
            kill_to_all_done=found["all_done"],
            attempts=dict(outcome.attempts),
        )
        assert found["all_done"] is not None, (
            f"{outcome.describe()}\nqueued with their message gone: {stuck.exclude(published_at=None).count()}, "
            f"never published: {stuck.filter(published_at=None).count()}"
        )
        assert not outcome.problems, outcome.describe()
    finally:
        stack.stop()  # before the sentinels and Redis go, so no process waits on them
        _reset_publisher(redis_server.url)

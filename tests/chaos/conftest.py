"""Fixtures of the chaos suite: a stack of real processes per case (workers, beats, web) and
the parts a case breaks (a PostgreSQL, a Redis, a network namespace of its own).

Teardown order matters: `stacks` depends on the factories of the parts, so its processes are
stopped first, and then the parts go (PostgreSQL, Redis, the namespace and its veth pair)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.infra import REPORTED, chaos_env
from tests.chaos.servers import BoundRedis, OwnPostgres, Partition, start_web
from tests.processes import CeleryProcess, start_beat, start_worker


@pytest.fixture(scope="session")
def chaos_kinds() -> None:
    """chaos.effect in this process's registry too: job_submit validates the kind."""
    import tests.chaos.kinds  # noqa: F401


@pytest.fixture
def own_postgres() -> Iterator[Callable[..., OwnPostgres]]:
    """Start a PostgreSQL of the test's own, with the schema migrated: own_postgres(listen=...,
    trusted=...)."""
    servers: list[OwnPostgres] = []

    def make(*, listen: Sequence[str] = ("127.0.0.1",), trusted: Sequence[str] = ()) -> OwnPostgres:
        server = OwnPostgres(listen=listen, trusted=trusted)
        servers.append(server)
        server.init().start()
        server.create_database()
        server.migrate()
        return server

    yield make
    for server in servers:
        server.cleanup()


@pytest.fixture
def private_redis() -> Iterator[Callable[..., BoundRedis]]:
    """Start a redis-server of the test's own: private_redis(bind=["127.0.0.1", ...])."""
    servers: list[BoundRedis] = []

    def make(*, bind: Sequence[str] = ("127.0.0.1",)) -> BoundRedis:
        server = BoundRedis(bind)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def partition() -> Iterator[Callable[[], Partition]]:
    """A network namespace joined to the host by a veth pair, destroyed even when the test fails."""
    made: list[Partition] = []

    def make() -> Partition:
        net = Partition()
        made.append(net)
        return net.create()

    yield make
    for net in made:
        net.destroy()


class Stack:
    """One case's processes, on the database and Redis it names, all with the suite's short
    timings and the effect ledger."""

    def __init__(self, case: str, *, database_url: str, redis_url: str, ledger: Path) -> None:
        self.case = case
        self.database_url = database_url
        self.redis_url = redis_url
        self.ledger = ledger
        self.processes: list[CeleryProcess] = []

    def env(self, **extra: str) -> dict[str, str]:
        base = {"database_url": self.database_url, "redis_url": self.redis_url}
        base["database_url"] = extra.pop("DATABASE_URL", base["database_url"])
        base["redis_url"] = extra.pop("REDIS_URL", base["redis_url"])
        return chaos_env(**base, ledger=self.ledger, **extra)

    def _name(self, role: str) -> str:
        return f"chaos-{self.case}-{role}"

    def worker(self, role: str, *, concurrency: int = 2, prefix: list[str] | None = None, **env: str) -> CeleryProcess:
        process = start_worker(self.env(**env), concurrency=concurrency, name=self._name(role), prefix=prefix)
        self.processes.append(process)
        return process

    def beat(self, role: str = "beat", **env: str) -> CeleryProcess:
        process = start_beat(self.env(**env), name=self._name(role))
        self.processes.append(process)
        return process

    def web(self, role: str, *, port: int, **env: str) -> CeleryProcess:
        process = start_web(self.env(**env), port=port, name=self._name(role))
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


@pytest.fixture
def stacks(
    tmp_path: Path, own_postgres: Any, private_redis: Any, partition: Any, chaos_kinds: None
) -> Iterator[Callable[..., Stack]]:
    """stacks(case, database_url=..., redis_url=...) -> a Stack, stopped at teardown."""
    made: list[Stack] = []

    def make(case: str, *, database_url: str, redis_url: str) -> Stack:
        stack = Stack(case, database_url=database_url, redis_url=redis_url, ledger=tmp_path / f"{case}-ledger.txt")
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORTED:
        terminalreporter.section("chaos figures")
        for line in REPORTED:
            terminalreporter.write_line(line)

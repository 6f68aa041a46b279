"""The platform's Redis client: a plain client on the broker's server, for the platform's own
keys (the broker sentinel, drain counters, concurrency slots, rate buckets, queue depths,
metrics), every one under KEY_PREFIX (`key()`), and a way to send fire-and-forget writes in
one round trip.

In a worker's pool process those writes go behind (`write_behind_start`): a background thread
sends them, several jobs' worth per round trip, while the job's process goes on to its next
job. They are counters and doorbells; PostgreSQL holds every job's state, so a write that is
late by milliseconds, or lost with a killed process, loses no job.

REDIS_URL may name Redis Sentinel instead of a server (`sentinel://host:26379;sentinel://...`,
as kombu's sentinel transport reads it): the client then asks the sentinels for the master
named REDIS_SENTINEL_MASTER on every new connection, so it follows a failover."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.retry import Retry
from redis.sentinel import Sentinel

logger = logging.getLogger(__name__)

# Every key the platform keeps in Redis starts with this; kombu's own (the queues, named by
# the queues, and its bookkeeping) do not.
KEY_PREFIX = "jobplatform:"


def key(name: str) -> str:
    """The platform's Redis key `name`: key("broker-sentinel") is "jobplatform:broker-sentinel"."""
    return KEY_PREFIX + name


_clients: dict[tuple[str, str, str], redis.Redis] = {}
_batch: contextvars.ContextVar[list[Callable[[Pipeline], object]] | None] = contextvars.ContextVar(
    "redis_write_batch", default=None
)

SENTINEL_SCHEME = "sentinel"
SENTINEL_DEFAULT_PORT = 26379


@dataclasses.dataclass(frozen=True)
class SentinelURL:
    """A REDIS_URL that names Redis Sentinel: `sentinel://[[user]:password@]host[:port][/db]`
    entries joined by `;`, one per sentinel. The database and credentials are the master's
    (the sentinels' own password is REDIS_SENTINEL_PASSWORD)."""

    sentinels: tuple[tuple[str, int], ...]
    db: int = 0
    username: str | None = None
    password: str | None = None


def sentinel_url_parse(url: str) -> SentinelURL | None:
    """The sentinels a `sentinel://` URL names; None for any other URL (redis://, rediss://,
    unix://).

    kombu reads the database and credentials of the entry it is connected through, and moves
    to the next entry whenever a connection fails, a failover included (kombu.Connection.switch:
    an entry's password replaces the last one, even when it has none; a database, once named,
    sticks). So the credentials must be the same on every entry, and every entry that names a
    database must name the first one's (0 when it names none); anything else is an error here,
    not a broker that quietly loses its password or moves to another database mid-failover."""
    entries = [urlsplit(entry.strip()) for entry in url.split(";") if entry.strip()]
    if not entries or entries[0].scheme != SENTINEL_SCHEME:
        return None
    first = entries[0]
    db = _database(first) or 0
    userinfo = first.netloc.rpartition("@")[0]
    for parts in entries[1:]:
        if parts.scheme != SENTINEL_SCHEME:
            raise ValueError(f"REDIS_URL mixes sentinel:// with {parts.scheme}:// entries")
        if parts.netloc.rpartition("@")[0] != userinfo:
            raise ValueError("REDIS_URL: give every sentinel:// entry the same credentials (or none)")
        if _database(parts) not in (None, db):
            raise ValueError(f"REDIS_URL: every sentinel:// entry that names a database must name {db}")
    return SentinelURL(
        # .port raises ValueError for a port that is not a number: strict, as settings are.
        sentinels=tuple((parts.hostname or "localhost", parts.port or SENTINEL_DEFAULT_PORT) for parts in entries),
        db=db,
        username=unquote(first.username) if first.username else None,
        password=unquote(first.password) if first.password else None,
    )


def _database(parts: SplitResult) -> int | None:
    text = parts.path.strip("/")
    if not text:
        return None
    if not text.isdigit():
        raise ValueError(f"REDIS_URL: the database must be a number, not {text!r}")
    return int(text)


def redis_client_for(
    url: str, *, master_name: str, sentinel_password: str | None = None, **options: Any
) -> redis.Redis:
    """A client on `url`. For a sentinel:// URL it is the master named `master_name`: its
    connection pool asks the sentinels for the master's address on every new connection and
    drops its connections when that address changes (redis.sentinel.SentinelConnectionPool),
    so after a failover the next command finds the new master. `options` (timeouts, retry)
    apply to the master's connections and the sentinels' alike."""
    sentinel = sentinel_url_parse(url)
    if sentinel is None:
        return redis.Redis.from_url(url, **options)
    sentinel_kwargs = {key: value for key, value in options.items() if key.startswith("socket_") or key == "retry"}
    if sentinel_password:
        sentinel_kwargs["password"] = sentinel_password
    credentials = {"username": sentinel.username, "password": sentinel.password}
    manager = Sentinel(list(sentinel.sentinels), sentinel_kwargs=sentinel_kwargs)
    return manager.master_for(
        master_name,
        db=sentinel.db,
        **{key: value for key, value in credentials.items() if value is not None},
        **options,
    )


def redis_client() -> redis.Redis:
    url, master = settings.REDIS_URL, settings.REDIS_SENTINEL_MASTER
    password = settings.REDIS_SENTINEL_PASSWORD
    client = _clients.get((url, master, password))
    if client is None:
        # Fail fast: no retries with backoff, so an unreachable Redis costs a request or a
        # claim milliseconds (admission then counts in PostgreSQL), not seconds. Under
        # Sentinel a command during a failover fails as fast, and a later one reaches the
        # new master.
        client = _clients[(url, master, password)] = redis_client_for(
            url,
            master_name=master,
            sentinel_password=password or None,
            socket_timeout=2,
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )
    return client


def reset_redis_client() -> None:
    """Forget the clients (tests pointing the platform at another Redis or Sentinel)."""
    _clients.clear()


# --- write-behind, in worker processes --------------------------------------------------

_GATHER_SECONDS = 0.002  # after the first write, wait this long for the job's others to join
# Counters (metrics, drain counts) are summed in the process and sent at most this often:
# a job's dozen increments become a share of one HINCRBY per field and flush. Doorbells and
# other writes still leave within _GATHER_SECONDS.
SUM_SECONDS = 0.05

# One addition to a counter: (key, hash field or None for the key itself, amount).
Addition = tuple[str, str | None, int | float]
_WAKE: list[Callable[[Pipeline], object]] = []  # wakes the thread to look at the sums' time


class _WriteBehind:
    def __init__(self) -> None:
        self.pid = os.getpid()
        # A list of writes per job start or finish; None asks the thread to send what it has and end.
        self.queue: queue.SimpleQueue[list[Callable[[Pipeline], object]] | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.sums: dict[tuple[str, str | None], int | float] = {}
        self.expiries: dict[str, int] = {}
        self.sums_due: float | None = None
        self.thread = threading.Thread(target=self._run, name="redis-write-behind", daemon=True)
        self.thread.start()

    def add(self, additions: list[Addition], expire_seconds: int | None) -> None:
        with self.lock:
            wake = self.sums_due is None
            if wake:
                self.sums_due = time.monotonic() + SUM_SECONDS
            for name, field, amount in additions:
                self.sums[(name, field)] = self.sums.get((name, field), 0) + amount
                if field is None and expire_seconds:
                    self.expiries[name] = expire_seconds
        if wake:
            self.queue.put(_WAKE)

    def _take_sums(self, force: bool) -> list[Callable[[Pipeline], object]]:
        with self.lock:
            if self.sums_due is None or not (force or time.monotonic() >= self.sums_due):
                return []
            sums, expiries = self.sums, self.expiries
            self.sums, self.expiries, self.sums_due = {}, {}, None
        return [lambda pipe: _add_commands(pipe, sums, expiries)]

    def _run(self) -> None:
        while True:
            due = self.sums_due
            try:
                first = self.queue.get(timeout=None if due is None else max(0.0, due - time.monotonic()))
            except queue.Empty:
                batches = []
            else:
                batches = [first]
                time.sleep(_GATHER_SECONDS)
                with contextlib.suppress(queue.Empty):
                    while True:
                        batches.append(self.queue.get_nowait())
            stop = None in batches
            commands = [command for batch in batches if batch is not None for command in batch]
            commands += self._take_sums(force=stop)
            if commands:
                try:
                    _send(commands)
                except Exception:  # nothing may end the thread every later write needs
                    logger.exception("%d Redis write(s) dropped", len(commands))
            if stop:
                return

    def stop(self, timeout: float) -> None:
        self.queue.put(None)
        self.thread.join(timeout)


def _add_commands(pipe: Pipeline, sums: dict[tuple[str, str | None], int | float], expiries: dict[str, int]) -> None:
    for (name, field), amount in sums.items():
        if field is None:
            pipe.incrbyfloat(name, amount) if isinstance(amount, float) else pipe.incrby(name, amount)
            if name in expiries:
                pipe.expire(name, expiries[name])
        elif isinstance(amount, float):
            pipe.hincrbyfloat(name, field, amount)
        else:
            pipe.hincrby(name, field, amount)


_behind: _WriteBehind | None = None


def write_behind_start() -> None:
    """Send this process's fire-and-forget writes from a background thread from now on
    (each worker pool process calls it once it has forked)."""
    global _behind
    _behind = _WriteBehind()


def write_behind_stop(timeout: float = 2.0) -> None:
    """Send what is waiting and go back to sending at once (a pool process leaving)."""
    global _behind
    behind, _behind = _behind, None
    if behind is not None and behind.pid == os.getpid():
        behind.stop(timeout)


def _behind_here() -> _WriteBehind | None:
    behind = _behind
    return behind if behind is not None and behind.pid == os.getpid() else None


def _dispatch(commands: list[Callable[[Pipeline], object]]) -> None:
    behind = _behind_here()
    if behind is not None:
        behind.queue.put(commands)
    else:
        _send(commands)


def write(command: Callable[[Pipeline], object]) -> None:
    """Queue a fire-and-forget write (a counter, a notification). Inside `batched_writes()`
    it waits for the batch's single round trip; otherwise it is sent at once. A Redis error
    is logged, never raised: the work these writes describe must not fail for them."""
    pending = _batch.get()
    if pending is not None:
        pending.append(command)
        return
    _dispatch([command])


def add(additions: list[Addition], *, expire_seconds: int | None = None) -> None:
    """Add to counters, fire and forget: hash fields (HINCRBY, HINCRBYFLOAT for a float) or,
    where the field is None, keys (INCRBY, then EXPIRE when `expire_seconds` is given). In a
    process that writes behind they are summed and sent every SUM_SECONDS; elsewhere they
    are one write (`write`)."""
    behind = _behind_here()
    if behind is not None:
        behind.add(additions, expire_seconds)
        return
    sums: dict[tuple[str, str | None], int | float] = {}
    for name, field, amount in additions:
        sums[(name, field)] = sums.get((name, field), 0) + amount
    expiries = {name: expire_seconds for name, field, _ in additions if field is None and expire_seconds}
    write(lambda pipe: _add_commands(pipe, sums, expiries))


@contextmanager
def batched_writes() -> Iterator[None]:
    """Collect the writes made inside and send them in one pipeline at the end (the worker
    wraps a job's start and its finish in one each)."""
    pending: list[Callable[[Pipeline], object]] = []
    token = _batch.set(pending)
    try:
        yield
    finally:
        _batch.reset(token)
        if pending:
            _dispatch(pending)


def _send(commands: list[Callable[[Pipeline], object]]) -> None:
    try:
        pipe = redis_client().pipeline(transaction=False)
        for command in commands:
            try:
                command(pipe)
            except Exception:  # a faulty write is dropped alone, not with the batch it is in
                logger.exception("a Redis write could not be prepared; dropped")
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("%d Redis write(s) dropped (metrics or notifications): %s", len(commands), exc)

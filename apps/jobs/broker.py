"""A plain Redis client on the broker's server, for the platform's own keys (the broker
sentinel, drain counters, concurrency slots, rate buckets, queue depths, metrics), and a way
to send fire-and-forget writes in one round trip.

In a worker's pool process those writes go behind (`write_behind_start`): a background thread
sends them, several jobs' worth per round trip, while the job's process goes on to its next
job. They are counters and doorbells; PostgreSQL holds every job's state, so a write that is
late by milliseconds, or lost with a killed process, loses no job."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.client import Pipeline
from redis.retry import Retry

logger = logging.getLogger(__name__)

_clients: dict[str, redis.Redis] = {}
_batch: contextvars.ContextVar[list[Callable[[Pipeline], object]] | None] = contextvars.ContextVar(
    "redis_write_batch", default=None
)


def redis_client() -> redis.Redis:
    url = settings.REDIS_URL
    client = _clients.get(url)
    if client is None:
        # Fail fast: no retries with backoff, so an unreachable Redis costs a request or a
        # claim milliseconds (admission then counts in PostgreSQL), not seconds.
        client = _clients[url] = redis.Redis.from_url(
            url, socket_timeout=2, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
        )
    return client


def reset_redis_client() -> None:
    """Forget the clients (tests pointing the platform at another Redis)."""
    _clients.clear()


# --- write-behind, in worker processes --------------------------------------------------

_GATHER_SECONDS = 0.002  # after the first write, wait this long for the job's others to join


class _WriteBehind:
    def __init__(self) -> None:
        self.pid = os.getpid()
        # A list of writes per job start or finish; None asks the thread to send what it has and end.
        self.queue: queue.SimpleQueue[list[Callable[[Pipeline], object]] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="redis-write-behind", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            batches = [self.queue.get()]
            time.sleep(_GATHER_SECONDS)
            with contextlib.suppress(queue.Empty):
                while True:
                    batches.append(self.queue.get_nowait())
            stop = None in batches
            commands = [command for batch in batches if batch is not None for command in batch]
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


def _dispatch(commands: list[Callable[[Pipeline], object]]) -> None:
    behind = _behind
    if behind is not None and behind.pid == os.getpid():
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

"""A plain Redis client on the broker's server, for the platform's own keys (the broker
sentinel, drain counters, concurrency slots, rate buckets, queue depths, metrics), and a way
to send fire-and-forget writes in one round trip."""

from __future__ import annotations

import contextvars
import logging
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


def write(command: Callable[[Pipeline], object]) -> None:
    """Queue a fire-and-forget write (a counter, a notification). Inside `batched_writes()`
    it waits for the batch's single round trip; otherwise it is sent at once. A Redis error
    is logged, never raised: the work these writes describe must not fail for them."""
    pending = _batch.get()
    if pending is not None:
        pending.append(command)
        return
    _send([command])


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
            _send(pending)


def _send(commands: list[Callable[[Pipeline], object]]) -> None:
    try:
        pipe = redis_client().pipeline(transaction=False)
        for command in commands:
            command(pipe)
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("%d Redis write(s) dropped (metrics or notifications): %s", len(commands), exc)

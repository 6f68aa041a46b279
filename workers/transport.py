"""kombu's Redis transport, with one change: a channel keeps its synchronous Redis client.

kombu builds a new `redis.Redis` object for every command it sends outside the event loop:
each acknowledgement, each reservation of a message, each publish of the worker's task
events. Building one costs more than the round trip it makes (it copies the response
callbacks into a new dictionary): in a profile of a worker draining no-op jobs this was a
tenth of the main process's time. The client is a thin handle on the channel's connection
pool and safe to share, so the channel keeps one per pool (a new pool after a reconnect gets
a new client). The worker selects it at start (workers.tasks).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        shared = self._shared_client
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._shared_client = self._create_client()
        yield shared


class Transport(kombu_redis.Transport):
    Channel = Channel

"""A plain Redis client on the broker's server, for the platform's own keys (the broker
sentinel, drain counters, concurrency slots, rate buckets, queue depths)."""

from __future__ import annotations

import redis
from django.conf import settings

_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=1)
    return _client


def reset_redis_client() -> None:
    """Forget the client (tests pointing the platform at another Redis)."""
    global _client
    _client = None

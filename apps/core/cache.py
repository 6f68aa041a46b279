"""Django's cache on REDIS_URL, whether it names one Redis server or Redis Sentinel.

Django's RedisCache opens each `;`-separated part of its LOCATION as a Redis server, so a
sentinel:// URL would make it talk to the sentinels as if they were the cache. Here a
sentinel:// LOCATION gets a client on the master the sentinels name instead, built as the
platform's own client is (apps.core.redis.redis_client_for), so the cache follows a failover
too. Any other URL is Django's backend unchanged."""

from __future__ import annotations

from typing import Any

import redis
from django.conf import settings
from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from apps.core.redis import redis_client_for, sentinel_url_parse


class SentinelRedisCacheClient(RedisCacheClient):
    """Every read and write goes to the current master: a replica may lag behind it, and a
    cache that reads its own writes is what callers of Django's cache expect."""

    def __init__(self, servers: list[str], serializer: Any = None, **options: Any) -> None:
        super().__init__(servers, serializer=serializer)
        self._url = ";".join(servers)
        # Socket options (timeouts) as in CACHES["default"]["OPTIONS"]; Django's pool_class and
        # parser_class have no meaning for a sentinel-managed pool. One try per sentinel and
        # per command unless told otherwise: with redis-py's default retries a dead sentinel
        # listed first costs seconds, and a cache must never hold a request that long.
        self._options = {"retry": Retry(NoBackoff(), 0), **options}
        self._master: redis.Redis | None = None

    def get_client(self, key: Any = None, *, write: bool = False) -> redis.Redis:
        if self._master is None:
            self._master = redis_client_for(
                self._url,
                master_name=settings.REDIS_SENTINEL_MASTER,
                sentinel_password=settings.REDIS_SENTINEL_PASSWORD or None,
                **self._options,
            )
        return self._master


class RedisCache(DjangoRedisCache):
    def __init__(self, server: str | list[str], params: dict[str, Any]) -> None:
        super().__init__(server, params)
        if sentinel_url_parse(";".join(self._servers)) is not None:
            self._class = SentinelRedisCacheClient

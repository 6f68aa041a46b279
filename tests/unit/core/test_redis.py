"""REDIS_URL naming Redis Sentinel: how the URL is read (as kombu reads it, or refused where
kombu would read it inconsistently), and the clients built from it. No server is needed:
redis-py connects lazily. tests/chaos/test_sentinel.py runs them through a real failover."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCacheClient
from kombu import Connection
from kombu.utils.json import loads
from kombu.utils.url import _parse_url
from redis.connection import ConnectionPool
from redis.sentinel import SentinelConnectionPool

from apps.core import redis as platform_redis
from apps.core.cache import SentinelRedisCacheClient
from apps.core.redis import SentinelURL, redis_client_for, sentinel_url_parse

THREE = "sentinel://10.0.0.1:26379;sentinel://10.0.0.2:26380;sentinel://10.0.0.3/0"


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://h:6380/1", "unix:///run/redis.sock"])
def test_a_url_that_does_not_name_sentinel_is_left_to_redis_py(url):
    assert sentinel_url_parse(url) is None


def test_each_entry_is_a_sentinel_with_the_default_port_when_it_names_none():
    assert sentinel_url_parse(THREE) == SentinelURL(
        sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379)), db=0
    )


def test_the_sentinels_are_those_kombus_sentinel_transport_asks():
    # kombu.transport.redis.SentinelChannel._sentinel_managed_pool reads connection.client.alt.
    alt = Connection(THREE, transport_options={"master_name": "mymaster"}).alt
    kombu_sentinels = tuple((_parse_url(u).hostname, _parse_url(u).port or 26379) for u in alt)
    assert sentinel_url_parse(THREE).sentinels == kombu_sentinels


def test_the_database_and_the_masters_credentials_come_from_the_url():
    parsed = sentinel_url_parse("sentinel://app:p%40ss@h1:26379/2;sentinel://app:p%40ss@h2:26379/2")
    assert (parsed.db, parsed.username, parsed.password) == (2, "app", "p@ss")
    assert sentinel_url_parse("sentinel://:secret@h1;sentinel://:secret@h2").password == "secret"


@pytest.mark.parametrize(
    "url",
    [
        # kombu moves to the next entry when a connection fails, and takes that entry's
        # password (none here): the broker would lose its password mid-failover.
        "sentinel://:secret@h1;sentinel://h2",
        # kombu keeps database 0 from the first entry until it fails over to the last.
        "sentinel://h1;sentinel://h2/3",
        "sentinel://h1/1;sentinel://h2/2",
        "sentinel://h1;redis://h2:6379/0",
    ],
)
def test_a_url_kombu_would_read_inconsistently_is_refused(url):
    with pytest.raises(ValueError, match="REDIS_URL"):
        sentinel_url_parse(url)


@pytest.mark.parametrize(
    ("url", "message"), [("sentinel://h1/zero", "must be a number"), ("sentinel://h1:port", "Port")]
)
def test_a_malformed_sentinel_url_is_refused(url, message):
    with pytest.raises(ValueError, match=message):
        sentinel_url_parse(url)


def test_a_sentinel_client_asks_for_the_named_master_with_the_given_options():
    client = redis_client_for(
        "sentinel://:pw@h1:26379/3;sentinel://:pw@h2:26380/3",
        master_name="jobs",
        sentinel_password="sentinel-pw",
        socket_timeout=2,
        socket_connect_timeout=1,
    )
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert (pool.service_name, pool.is_master) == ("jobs", True)
    master = {
        key: pool.connection_kwargs[key] for key in ("db", "password", "socket_timeout", "socket_connect_timeout")
    }
    assert master == {"db": 3, "password": "pw", "socket_timeout": 2, "socket_connect_timeout": 1}
    manager = pool.sentinel_manager
    addresses = [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in manager.sentinels
    ]
    assert addresses == [("h1", 26379), ("h2", 26380)]
    # The sentinels get the same timeouts, and their own password, never the master's.
    assert manager.sentinel_kwargs == {"socket_timeout": 2, "socket_connect_timeout": 1, "password": "sentinel-pw"}


def test_a_redis_url_gets_a_plain_client():
    pool = redis_client_for("redis://127.0.0.1:6390/4", master_name="unused", socket_timeout=2).connection_pool
    assert type(pool) is ConnectionPool
    assert (pool.connection_kwargs["port"], pool.connection_kwargs["db"]) == (6390, 4)


def test_the_platform_client_follows_the_settings_and_fails_fast_under_sentinel(settings):
    settings.REDIS_URL, settings.REDIS_SENTINEL_MASTER = THREE, "jobs"
    platform_redis.reset_redis_client()
    try:
        client = platform_redis.redis_client()
        assert platform_redis.redis_client() is client
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "jobs"
        retry = pool.connection_kwargs["retry"]
        assert retry.get_retries() == 0  # fail fast: no retries with backoff
        assert (pool.connection_kwargs["socket_timeout"], pool.connection_kwargs["socket_connect_timeout"]) == (2, 1)
        assert pool.sentinel_manager.sentinel_kwargs["retry"] is retry  # the sentinels too

        settings.REDIS_SENTINEL_MASTER = "other"
        assert platform_redis.redis_client().connection_pool.service_name == "other"
        platform_redis.reset_redis_client()
        assert platform_redis.redis_client() is not client
    finally:
        platform_redis.reset_redis_client()


def celery_settings_for(redis_url: str) -> dict:
    """config.settings.celery as a process with this REDIS_URL would read it."""
    env = {**os.environ, "REDIS_URL": redis_url, "DJANGO_SETTINGS_MODULE": "config.settings"}
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "from kombu.utils.json import dumps; "
        "print(dumps([s.REDIS_SENTINEL_MASTER, s.CELERY_BROKER_TRANSPORT_OPTIONS]))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    master, options = loads(out.stdout.strip().splitlines()[-1])  # as a stats reply is read
    return {"master": master, "options": options}


def test_the_broker_asks_the_sentinels_for_the_same_master():
    read = celery_settings_for(THREE)
    options = read["options"]
    assert options["master_name"] == read["master"]
    assert {"socket_timeout", "socket_connect_timeout"} <= set(options["sentinel_kwargs"])
    # One try per sentinel (a dead one listed first must not cost every connection seconds),
    # and the options still cross JSON, as a worker's `stats` reply sends them.
    assert options["sentinel_kwargs"]["retry"] == "Retry(NoBackoff, 0)"


def test_a_plain_redis_broker_carries_no_sentinel_options():
    options = celery_settings_for("redis://127.0.0.1:6379/0")["options"]
    assert "master_name" not in options
    assert "sentinel_kwargs" not in options


def test_the_cache_talks_to_the_master_the_sentinels_name(settings):
    # Django resets its cache handlers when CACHES changes (django.test.signals).
    settings.CACHES = {"default": {**django_settings.CACHES["default"], "LOCATION": THREE}}
    cache_client = caches["default"]._cache
    assert isinstance(cache_client, SentinelRedisCacheClient)
    client = cache_client.get_client(write=False)
    assert cache_client.get_client(write=True) is client  # reads too: a replica may lag
    assert isinstance(client.connection_pool, SentinelConnectionPool)
    assert client.connection_pool.service_name == django_settings.REDIS_SENTINEL_MASTER
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 1
    assert client.connection_pool.sentinel_manager.sentinel_kwargs["retry"].get_retries() == 0


def test_the_cache_on_a_redis_url_is_djangos_own(settings):
    settings.CACHES = {"default": {**django_settings.CACHES["default"], "LOCATION": "redis://127.0.0.1:6390/0"}}
    assert type(caches["default"]._cache) is RedisCacheClient


def test_the_worker_keeps_kombus_sentinel_transport():
    from workers.tasks import use_shared_client_transport

    class Conf:
        broker_transport = None

        def __init__(self, url: str) -> None:
            self.broker_url = url

    sentinel, plain = Conf(THREE), Conf("redis://127.0.0.1:6379/0")
    use_shared_client_transport(conf=sentinel)
    use_shared_client_transport(conf=plain)
    assert sentinel.broker_transport is None
    assert plain.broker_transport == "workers.transport:Transport"

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from kombu import pools
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import UserFactory
from tests.processes import CeleryProcess, RedisServer, celery_env, start_beat, start_worker, start_worker_io

# The shared helpers assert; have pytest explain their failures as it does a test's own.
pytest.register_assert_rewrite("tests.helpers")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def _broker(redis_server: RedisServer) -> None:
    """Point this process's publisher at the private Redis, never the shared one."""
    _reset_publisher(redis_server.url)


def _reset_publisher(url: str) -> None:
    from asgiref.local import Local
    from django.conf import settings
    from django.core.cache import caches

    from apps.core import redis as platform_redis
    from config.celery import app

    settings.REDIS_URL = url
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": url}}
    caches._settings = caches.settings = caches.configure_settings(None)
    caches._connections = Local()
    app.conf.broker_url = url
    # Drop connections to a previous Redis. Celery's pool is an entry in kombu's global
    # registry keyed by URL, so the registry is reset too, or a closed pool would come back.
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None
    platform_redis.reset_redis_client()


@pytest.fixture(autouse=True)
def _queue_state_forgotten() -> Iterator[None]:
    """What a test leaves in Redis and this process that the database's rollback does not
    undo, cleared before the next test:
    - the queues' messages, windows and held counts (apps.jobs.dispatch): messages an earlier
      test left on a queue would fill its window, and a window a beat or a reconciler sweep
      sized would hold this test's submissions back for its keys' lifetime, with no
      dispatcher running to send them;
    - the pauses' Redis key and this process's view of it (apps.jobs.pauses)."""
    import contextlib

    from redis.exceptions import RedisError

    from apps.core.redis import redis_client
    from apps.jobs import pauses
    from apps.jobs.dispatch import window_keys

    def forget() -> None:
        pauses.pause_cache_forget()
        with contextlib.suppress(RedisError):
            keys = [k for queue in pauses.job_queues() for k in window_keys(queue)]
            redis_client().delete(pauses.PAUSES_KEY, *keys)

    forget()
    yield
    forget()


@pytest.fixture
def user(db: Any):
    return UserFactory()


@pytest.fixture
def api(user: Any) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def database_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class Platform:
    """The worker side of the stack for one test: real Celery workers and beat, on the test
    database (committed data: the tests use transactional_db) and the private Redis."""

    def __init__(self, redis: RedisServer) -> None:
        self.redis = redis
        self.processes: list[CeleryProcess] = []

    def env(self, **extra: str) -> dict[str, str]:
        return celery_env(database_url=database_url(), redis_url=self.redis.url, **extra)

    def worker(self, **kwargs: Any) -> CeleryProcess:
        env = self.env(**kwargs.pop("env", {}))
        process = start_worker(env, **kwargs)
        self.processes.append(process)
        return process

    def worker_io(self, **kwargs: Any) -> CeleryProcess:
        """The Procfile's worker-io (a thread pool on the I/O queues)."""
        env = self.env(**kwargs.pop("env", {}))
        process = start_worker_io(env, **kwargs)
        self.processes.append(process)
        return process

    def beat(self, **extra_env: str) -> CeleryProcess:
        process = start_beat(self.env(**extra_env))
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            process.stop()
        self.processes.clear()


@pytest.fixture
def platform(transactional_db: Any, redis_server: RedisServer) -> Iterator[Platform]:
    if connection.vendor != "postgresql":
        pytest.skip("worker tests run against PostgreSQL (set DATABASE_URL)")
    p = Platform(redis_server)
    yield p
    p.stop()


def json_roundtrip(value: Any) -> Any:
    """What crosses the broker: task arguments must survive JSON."""
    return json.loads(json.dumps(value))


@pytest.fixture
def own_redis(platform, redis_server):
    """A Redis for this test alone, which it may flush or stop; the publisher and the
    test's workers and beat follow it."""
    server = RedisServer().start()
    _reset_publisher(server.url)
    platform.redis = server
    yield server
    platform.stop()
    server.stop()
    _reset_publisher(redis_server.url)


@pytest.fixture
def receiver() -> Iterator[Any]:
    """A local HTTP server that records the webhooks it receives (unit and integration tests)."""
    from tests.helpers.webhooks import Receiver

    r = Receiver().start()
    yield r
    r.stop()

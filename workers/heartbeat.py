"""A worker's heartbeat in Redis: a key that expires unless the worker's main process keeps
renewing it. /readyz and /metrics count the live ones."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from celery.signals import celeryd_init, worker_shutdown
from redis.exceptions import RedisError

from apps.core.redis import redis_client
from apps.ops.selectors import WORKER_KEY_PREFIX

logger = logging.getLogger(__name__)

INTERVAL_SECONDS = 5
TTL_SECONDS = 15

_stop = threading.Event()


def _beat(hostname: str) -> None:
    key = f"{WORKER_KEY_PREFIX}{hostname}"
    while True:
        try:
            redis_client().set(key, "1", ex=TTL_SECONDS)
        except RedisError as exc:
            logger.warning("worker heartbeat not sent: %s", exc)
        if _stop.wait(INTERVAL_SECONDS):
            return


@celeryd_init.connect(dispatch_uid="workers.heartbeat.start")
def start(sender: Any = None, instance: Any = None, **kwargs: Any) -> None:
    # As early as the worker knows its name: readiness probes should see a starting worker
    # as soon as possible. A worker that then fails to start stops renewing, and its key
    # expires within TTL_SECONDS.
    hostname = getattr(instance, "hostname", None) or (sender if isinstance(sender, str) else None) or "worker"
    threading.Thread(target=_beat, args=(hostname,), name="heartbeat", daemon=True).start()


@worker_shutdown.connect(dispatch_uid="workers.heartbeat.stop")
def stop(sender: Any = None, **kwargs: Any) -> None:
    _stop.set()
    hostname = getattr(sender, "hostname", None)
    if hostname:
        with contextlib.suppress(RedisError):
            redis_client().delete(f"{WORKER_KEY_PREFIX}{hostname}")

"""Change notifications for long polling (`GET /api/v1/jobs/{id}?wait=N`).

When a job changes state, whichever process changed it PUBLISHes on the job's own Redis
channel once the change has committed. A waiting request SUBSCRIBEs to that channel and sleeps
in a socket read until a message or its deadline, holding neither a database connection nor a
CPU. Redis is only a doorbell here: the waiter re-reads PostgreSQL after every ring, so a lost
message costs latency (the wait ends at its deadline), never correctness.

Waiters are bounded per process (JOB_WAIT_MAX_WAITERS): each holds a web thread, and threads
are finite. Past the bound, or with Redis unreachable, a wait answers at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis
from django.conf import settings

from apps.core import redis as platform_redis
from apps.core.redis import key

logger = logging.getLogger(__name__)

# The longest a client may ask to wait (`?wait=N`); well under gunicorn's 60 s timeout.
WAIT_MAX_SECONDS = 30

_CHANNEL = key("job:{}")


def job_channel(job_id: object) -> str:
    return _CHANNEL.format(job_id)


def redis_client() -> redis.Redis:
    """The broker's fail-fast client (no retries with backoff), so an unreachable Redis costs a
    claim or a long poll milliseconds, not seconds."""
    return platform_redis.redis_client()


# --- publishing --------------------------------------------------------------------------


def job_changed_publish(job_id: object) -> None:
    """Ring the job's doorbell. Never raises: a job's change must not fail because Redis is
    away (waiters then end at their deadline and read the new state)."""
    jobs_changed_publish([job_id])


def jobs_changed_publish(job_ids: Iterable[object]) -> None:
    """Ring many doorbells in one round trip."""
    channels = [job_channel(job_id) for job_id in job_ids]
    if not channels:
        return

    def command(pipe: Any) -> None:
        for channel in channels:
            pipe.publish(channel, b"1")

    # In a worker this joins the job's other writes in one round trip (broker.batched_writes);
    # a Redis error is logged there, never raised.
    platform_redis.write(command)


# Receivers for apps.jobs.signals (connected in JobsConfig.ready). Each signal is sent after
# its change committed, so a woken waiter reads the new state.


def on_job_changed(sender: Any, job_id: object = None, **kwargs: Any) -> None:
    if job_id is not None:
        job_changed_publish(job_id)


# --- waiting -----------------------------------------------------------------------------

_slots_lock = threading.Lock()
_waiting = 0


def waiters_now() -> int:
    """How many requests of this process are waiting right now (tests, metrics)."""
    return _waiting


class JobWaiter:
    """Subscribe to a job's channel before reading the job, then wait for a ring:

        with JobWaiter(job_id) as waiter:
            state = read()
            while unchanged(state) and waiter.wait(remaining):
                state = read()

    Subscribing first means a change that commits between the read and the wait still rings.
    `active` is False when the process is at its waiter bound or Redis is unreachable; then
    `wait` returns False at once and the caller answers with what it has.
    """

    def __init__(self, job_id: object) -> None:
        self.channel = job_channel(job_id)
        self.active = False
        self._slot = False
        self._pubsub: redis.client.PubSub | None = None

    def __enter__(self) -> JobWaiter:
        global _waiting
        with _slots_lock:
            if _waiting < settings.JOB_WAIT_MAX_WAITERS:
                _waiting += 1
                self._slot = True
        if not self._slot:
            logger.info("long poll refused: %d requests already waiting in this process", _waiting)
            return self
        try:
            pubsub = redis_client().pubsub()
            self._pubsub = pubsub
            pubsub.subscribe(self.channel)
            # Wait for Redis to confirm, so the subscription is live before the caller reads.
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                message = pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
                if message and message["type"] == "subscribe":
                    self.active = True
                    break
        except (redis.RedisError, OSError) as exc:
            logger.warning("long poll unavailable (Redis unreachable), answering at once: %s", exc)
        if not self.active:
            self._close()
        return self

    def wait(self, timeout: float) -> bool:
        """Sleep until the job's doorbell rings (True) or `timeout` seconds pass (False)."""
        if not self.active or self._pubsub is None:
            return False
        deadline = time.monotonic() + timeout
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                message = self._pubsub.get_message(timeout=remaining)
                if message and message["type"] == "message":
                    return True
        except (redis.RedisError, OSError) as exc:
            logger.warning("long poll lost its Redis connection, answering at once: %s", exc)
            self.active = False
        return False

    def _close(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # closing a broken connection; nothing to recover
                logger.debug("closing a long poll's subscription failed", exc_info=True)
            self._pubsub = None

    def __exit__(self, *exc_info: object) -> None:
        global _waiting
        self._close()
        self.active = False
        if self._slot:
            with _slots_lock:
                _waiting -= 1
            self._slot = False

"""Celery, configured from these settings with the CELERY_ namespace (config/celery.py):
the broker (Redis, or Redis Sentinel), delivery policy, worker limits and beat's schedule.
Every variable read here is described in docs/settings.md."""

from __future__ import annotations

from kombu import Queue
from kombu.utils.json import register_type
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.env import env_bool, env_float, env_int, env_str
from config.settings.jobs import RECONCILE_INTERVAL_SECONDS, SCHEDULE_SWEEP_SECONDS
from config.settings.ops import DEAD_LETTER_CHECK_SECONDS, PRUNE_INTERVAL_SECONDS

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# REDIS_URL may name Redis Sentinel instead of one server, as kombu's sentinel transport reads
# it: `sentinel://host1:26379;sentinel://host2:26379;sentinel://host3:26379/0`, the master's
# password (if any) on every entry. Then this is the master the sentinels monitor (`sentinel
# monitor <name> ...`), and the broker and every Redis client follow its failovers.
REDIS_SENTINEL_MASTER = env_str("REDIS_SENTINEL_MASTER") or "mymaster"
# The sentinels' own password (`requirepass` in sentinel.conf), when they have one.
REDIS_SENTINEL_PASSWORD = env_str("REDIS_SENTINEL_PASSWORD")
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Redis redelivers an unacknowledged message only after this long; our lease reconciler
    # recovers crashed work in seconds, so this is the last resort, not the mechanism.
    # https://docs.celeryq.dev/en/stable/getting-started/backends-and-brokers/redis.html#visibility-timeout
    "visibility_timeout": env_int("BROKER_VISIBILITY_TIMEOUT", 3600, minimum=60),
    # Take from `high` before `default` before `low`, instead of kombu's round robin.
    "queue_order_strategy": "priority",
    "socket_timeout": 5,
    "socket_connect_timeout": 2,
}
if REDIS_URL.startswith("sentinel://"):
    # kombu.transport.redis.SentinelChannel (and Flower's queue view): the master to ask the
    # sentinels for, and how to reach the sentinels.
    CELERY_BROKER_TRANSPORT_OPTIONS["master_name"] = REDIS_SENTINEL_MASTER
    CELERY_BROKER_TRANSPORT_OPTIONS["sentinel_kwargs"] = {
        "socket_timeout": 5,
        "socket_connect_timeout": 2,
        # Ask each sentinel once and move on to the next: with redis-py's default retries a
        # dead sentinel listed first (often on the dead master's machine) cost every new
        # broker connection seconds.
        "retry": Retry(NoBackoff(), 0),
        **({"password": REDIS_SENTINEL_PASSWORD} if REDIS_SENTINEL_PASSWORD else {}),
    }
# A worker's `stats` reply (Flower's worker page, `celery inspect stats`) carries the transport
# options as JSON: a Retry object among them goes as its description, read back as text.
register_type(Retry, "redis.retry", lambda retry: f"Retry({type(retry._backoff).__name__}, {retry._retries})", str)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# PostgreSQL holds every job's state; a Celery result backend would be a second, weaker copy.
CELERY_TASK_IGNORE_RESULT = True
# No task-sent events: they double the cost of every publish (a batch of 1,000 spent half its
# time on them). Flower still sees every task from the worker's received/started/succeeded.
CELERY_TASK_SEND_SENT_EVENT = False
# Task events feed Flower's task views. They cost the worker's main process a publish every
# 0.1 s (workers.consumer; bench/run measures them); WORKER_TASK_EVENTS=0 turns them off, and a
# running Flower turns them on again in every worker (its enable_events, every 5 s).
CELERY_WORKER_SEND_TASK_EVENTS = env_bool("WORKER_TASK_EVENTS", True)
# The consumer that sends those events in one message every WORKER_EVENTS_FLUSH_SECONDS, not
# one per turn of the main process's loop.
CELERY_WORKER_CONSUMER = "workers.consumer:JobConsumer"
WORKER_EVENTS_FLUSH_SECONDS = env_float("WORKER_EVENTS_FLUSH_SECONDS", 0.1, minimum=0.0)
CELERY_TASK_DEFAULT_QUEUE = "default"
# Declared so every process (Flower's queue view included) knows them all, the dead_letter
# mirror too, even before a worker says what it consumes. The io_ queues carry the I/O-bound
# kinds (apps.jobs.registry.IO_QUEUES), consumed by the worker-io process (Procfile).
CELERY_TASK_QUEUES = [
    Queue(name) for name in ("high", "default", "low", "io_high", "io_default", "io_low", "dead_letter")
]
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("WORKER_MAX_TASKS_PER_CHILD", 1000, minimum=1)
CELERY_WORKER_MAX_MEMORY_PER_CHILD = env_int("WORKER_MAX_MEMORY_PER_CHILD_KB", 512_000, minimum=1024)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False


def _inline(task: str, every: float, *, fenced: bool = False) -> dict[str, object]:
    """A beat entry that runs inside the beat process itself (workers.beat.InlineScheduler):
    recovery and monitoring must not wait behind a backlog, nor stop when every worker is
    busy or dead. A `fenced` entry's task takes `fence`: a callable its transactions call
    first, which refuses the write when this beat no longer leads
    (apps.ops.control.control_loop_fence)."""
    return {"task": task, "schedule": every, "options": {"inline": True, "fenced": fenced}}


CELERY_BEAT_SCHEDULE = {
    "reconcile": _inline("platform.reconcile", RECONCILE_INTERVAL_SECONDS, fenced=True),
    "schedules": _inline("platform.schedules", SCHEDULE_SWEEP_SECONDS, fenced=True),
    "prune": _inline("platform.prune", PRUNE_INTERVAL_SECONDS),
    "bulk-operations": _inline("platform.bulk_operations", 1.0),
    "queue-monitor": _inline("platform.queue_monitor", DEAD_LETTER_CHECK_SECONDS),
    "dead-letter-monitor": _inline("platform.dead_letter_monitor", DEAD_LETTER_CHECK_SECONDS),
}

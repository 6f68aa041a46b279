"""Baseline 1: plain Celery, as a user would write it without the platform: no database, the
same Redis server (its own database number), the same worker settings as the platform's
worker (prefetch 1, late acks, the same concurrency). Each task counts itself in Redis."""

import os

import redis
from celery import Celery

BROKER = os.environ["BENCH_BROKER_URL"]
DONE_KEY = "bench:done"

app = Celery("bench_plain", broker=BROKER)
app.conf.update(
    task_ignore_result=True,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)
_counter = redis.Redis.from_url(BROKER)


@app.task(name="bench.plain.noop")
def noop(i: int) -> None:
    _counter.incr(DONE_KEY)


def done() -> int:
    return int(_counter.get(DONE_KEY) or 0)


def reset() -> None:
    _counter.set(DONE_KEY, 0)

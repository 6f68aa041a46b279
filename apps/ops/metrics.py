"""Prometheus metrics, counted in Redis so that every web and worker process adds to the
same figures (per-process counters would disagree across gunicorn and Celery processes).

Counters and histograms are Redis hashes, incremented where things happen; gauges (queue
depth, the oldest waiting job, dead letters, live workers) are read at scrape time."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from apps.core import redis as platform_redis
from apps.core.redis import key, redis_client
from apps.jobs import flow
from apps.jobs.registry import IO_QUEUES, PRIORITIES

logger = logging.getLogger(__name__)

PREFIX = key("m:")
JOB_EVENTS = ("submitted", "started", "succeeded", "failed", "cancelled", "retried", "dead_lettered")
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
# The priorities' queues and the I/O-bound kinds' (consumed by worker-io).
QUEUES = (*PRIORITIES, *IO_QUEUES)


def count_job_event(event: str, kind: str, n: int = 1) -> None:
    platform_redis.add([(f"{PREFIX}jobs:{event}", kind, n)])


def count_job_events(event: str, kinds: Iterable[str]) -> None:
    platform_redis.add([(f"{PREFIX}jobs:{event}", kind, 1) for kind in kinds])


def count_workflow_finished(status: str) -> None:
    platform_redis.add([(f"{PREFIX}workflows:finished", status, 1)])


def record_job_start(*, kind: str, queue: str, wait_seconds: float, now: float | None = None) -> None:
    """What a claim records in Redis: the queue's drain counter (admission control's
    Retry-After), the started count and the wait-time histogram."""
    platform_redis.add(
        [
            (flow.drain_key(queue, now), None, 1),
            (f"{PREFIX}jobs:started", kind, 1),
            *_observation("job_wait", kind, wait_seconds),
        ],
        expire_seconds=flow.DRAIN_WINDOW_SECONDS * 2,
    )


def _bucket_field(seconds: float) -> str:
    """The one bucket an observation falls in (the smallest bound it does not pass). Buckets
    are stored as plain counts, one HINCRBY per observation, and made cumulative at scrape."""
    for bound in SECONDS_BUCKETS:
        if seconds <= bound:
            return f"le:{bound}"
    return "le:+Inf"


def _observation(histogram: str, labels: str, seconds: float) -> list[platform_redis.Addition]:
    key = f"{PREFIX}h:{histogram}"
    return [
        (key, f"{labels}|{_bucket_field(seconds)}", 1),
        (key, f"{labels}|sum", float(seconds)),
        (key, f"{labels}|count", 1),
    ]


def observe(histogram: str, labels: str, seconds: float) -> None:
    """Add one observation; a hash per histogram holds per-bucket counts, sum and count for
    each label set (label values joined with '|')."""
    platform_redis.add(_observation(histogram, labels, seconds))


# The methods counted by name; any other (a client may send any token as its method) counts
# as OTHER, so requests cannot add series at will: 3,000 made-up methods would otherwise be
# 3,000 histograms on every scrape.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"
# Label values are joined with this in a Redis hash field and split on it at scrape time.
LABEL_SEPARATOR = "|"


def label_value(value: str) -> str:
    """A label value that cannot be split in two at scrape time: the separator inside it
    would forge a series (method "A|B" read back as method "A", route "B")."""
    return value.replace(LABEL_SEPARATOR, "_")


def count_request(method: str, route: str, status: int, seconds: float) -> None:
    """One API request, by method (a known one or OTHER), route pattern (never the raw
    path: the middleware passes the URL pattern, or a fixed label) and status."""
    labels = LABEL_SEPARATOR.join(
        label_value(v) for v in (method if method in HTTP_METHODS else OTHER_METHOD, route, str(status))
    )
    platform_redis.add(_observation("http_request", labels, seconds))


def _histogram(name: str, doc: str, label_names: list[str], raw: dict[bytes, bytes]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=label_names)
    series: dict[tuple[str, ...], dict[str, float]] = {}
    for field, value in raw.items():
        *labels, part = field.decode(errors="replace").split(LABEL_SEPARATOR)
        if len(labels) != len(label_names):
            continue  # a field written before label values were escaped: not a series of ours
        series.setdefault(tuple(labels), {})[part] = float(value)
    for labels, parts in sorted(series.items()):
        count = parts.get("count", 0.0)
        buckets, running = [], 0.0
        for bound in SECONDS_BUCKETS:
            running += parts.get(f"le:{bound}", 0.0)
            buckets.append((str(bound), running))
        buckets.append(("+Inf", count))
        family.add_metric(list(labels), buckets, parts.get("sum", 0.0))
    return family


class PlatformCollector(Collector):
    def collect(self) -> Iterator:  # type: ignore[override]
        from apps.deadletters.selectors import dead_letter_stats
        from apps.ops.selectors import live_workers, oldest_waiting_seconds
        from apps.workflows.selectors import workflows_running_count

        r = redis_client()
        events = CounterMetricFamily(
            "jobs",
            "Jobs by event and kind (submitted, started, succeeded, failed, cancelled, retried, dead_lettered).",
            labels=["event", "kind"],
        )
        for event in JOB_EVENTS:
            for kind, value in sorted(r.hgetall(f"{PREFIX}jobs:{event}").items()):
                events.add_metric([event, kind.decode()], float(value))
        yield events

        yield _histogram(
            "job_duration_seconds",
            "How long a job's successful or failed attempt ran.",
            ["kind", "outcome"],
            r.hgetall(f"{PREFIX}h:job_duration"),
        )
        yield _histogram(
            "job_wait_seconds",
            "How long a job waited from submission to its start.",
            ["kind"],
            r.hgetall(f"{PREFIX}h:job_wait"),
        )
        yield _histogram(
            "http_request_duration_seconds",
            "API requests by method, route and status.",
            ["method", "route", "status"],
            r.hgetall(f"{PREFIX}h:http_request"),
        )

        depth = GaugeMetricFamily("queue_depth", "Messages waiting on each queue.", labels=["queue"])
        for queue in (*QUEUES, "dead_letter"):
            depth.add_metric([queue], float(r.llen(queue)))
        yield depth
        held = GaugeMetricFamily(
            "queue_held_jobs", "Jobs waiting in PostgreSQL for their turn in each queue's window.", labels=["queue"]
        )
        window = GaugeMetricFamily("queue_window", "Messages each queue's window lets wait in Redis.", labels=["queue"])
        figures = r.mget([k for queue in QUEUES for k in (flow.held_key(queue), flow.window_key(queue))])
        for queue, held_count, size in zip(QUEUES, figures[::2], figures[1::2], strict=True):
            held.add_metric([queue], float(held_count or 0))
            if size is not None:
                window.add_metric([queue], float(size))
        yield held
        yield window
        oldest = GaugeMetricFamily(
            "queue_oldest_job_age_seconds", "Age of the oldest queued job per queue.", labels=["queue"]
        )
        for queue, age in oldest_waiting_seconds(QUEUES).items():
            oldest.add_metric([queue], age)
        yield oldest
        yield from _pause_metrics()

        stats = dead_letter_stats()
        yield GaugeMetricFamily("dead_letters", "Open dead letters.", value=float(stats.depth))
        yield GaugeMetricFamily(
            "dead_letter_oldest_age_seconds", "Age of the oldest open dead letter.", value=stats.oldest_age_seconds
        )
        yield GaugeMetricFamily(
            "workers_alive", "Workers that sent a heartbeat lately.", value=float(len(live_workers()))
        )
        yield from _control_loop_metrics()

        finished = CounterMetricFamily("workflows_finished", "Workflows ended, by outcome.", labels=["status"])
        for status, value in sorted(r.hgetall(f"{PREFIX}workflows:finished").items()):
            finished.add_metric([status.decode()], float(value))
        yield finished
        yield GaugeMetricFamily("workflows_running", "Workflows running now.", value=float(workflows_running_count()))


def _pause_metrics() -> Iterator[GaugeMetricFamily]:
    """1 for a paused queue or kind, 0 otherwise (apps.jobs.pauses), from one query: alert on
    a pause left on, `max_over_time(queue_paused[1h]) == 1`."""
    from apps.jobs.models import Pause
    from apps.jobs.pauses import job_queues
    from apps.jobs.registry import registry
    from apps.ops.selectors import pauses_by_target

    paused = pauses_by_target()
    queues = GaugeMetricFamily("queue_paused", "1 while the queue is paused, else 0.", labels=["queue"])
    for queue in job_queues():
        queues.add_metric([queue], 1.0 if (Pause.Target.QUEUE, queue) in paused else 0.0)
    yield queues
    kinds = GaugeMetricFamily("kind_paused", "1 while the kind is paused, else 0.", labels=["kind"])
    for kind in registry:
        kinds.add_metric([kind.name], 1.0 if (Pause.Target.KIND, kind.name) in paused else 0.0)
    yield kinds


def _control_loop_metrics() -> Iterator[GaugeMetricFamily]:
    """The control loop's pulse, from its lease row in PostgreSQL: alert on
    `time() - control_loop_last_sweep_timestamp_seconds > 30` (or `/readyz` answering 503)."""
    from apps.ops.control import control_loop_status

    status = control_loop_status()
    last = status.last_sweep_at.timestamp() if status.last_sweep_at else 0.0
    yield GaugeMetricFamily(
        "control_loop_last_sweep_timestamp_seconds",
        "When the control loop's last fully successful sweep ended (Unix time; 0: never).",
        value=last,
    )
    yield GaugeMetricFamily(
        "control_loop_seconds_since_sweep",
        "Seconds since the control loop's last successful sweep (or since its first leader, if none yet).",
        value=-1.0 if status.stalled_for is None else status.stalled_for,
    )
    leader = GaugeMetricFamily(
        "control_loop_leader",
        "The beat that leads the control loop (1), by identity and epoch.",
        labels=["leader", "epoch"],
    )
    if status.leader:
        leader.add_metric([status.leader, str(status.epoch)], 1.0)
    yield leader


def finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0

"""Publishing jobs to the broker. Enqueueing goes through `job_publish_on_commit`, which defers
to `transaction.on_commit`; anything that publishes outside a commit says so in its name
(as Zulip's `queue_json_publish_rollback_unsafe` does)."""

from __future__ import annotations

import base64
import functools
import logging
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from celery.events import Event
from celery.utils.time import utcoffset
from django.db import connection, transaction
from django.utils import timezone
from kombu.utils.json import dumps as json_dumps
from kombu.utils.uuid import uuid
from redis.exceptions import NoScriptError

from apps.core.db import prepared_cursor
from apps.core.telemetry import trace_headers
from config.celery import app as celery_app

if TYPE_CHECKING:
    from apps.jobs.models import Job

logger = logging.getLogger(__name__)

DEAD_LETTER_QUEUE = "dead_letter"
DEAD_LETTER_TASK = "platform.dead_letter"

# Fail fast when Redis is away: the job is already committed, and the relay publishes it
# once Redis answers again. Blocking the request for Celery's default retries helps no one.
_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
_CONNECT_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


class JobMessage(NamedTuple):
    """What the broker's message for a job carries and where it goes."""

    id: str
    kind: str
    queue: str
    request_id: str

    @classmethod
    def of(cls, job: Job) -> JobMessage:
        return cls(str(job.id), job.kind, job.queue, job.request_id)

    @classmethod
    def row(cls, row: tuple[Any, str, str, str]) -> JobMessage:
        """From a values_list("id", "kind", "queue", "request_id") row."""
        job_id, kind, queue, request_id = row
        return cls(str(job_id), kind, queue, request_id)


class _Messages:
    """Task messages for many jobs, the same ones `celery_app.send_task` would send, built at
    a fraction of its cost.

    send_task spends its Python per message on routing, option merging, declaring the queue again and signals: most
    of a 1,000-job batch's time (BENCHMARKS.md, batch submit). Here Celery's own protocol code (amqp.as_task_v2)
    builds one message per (kind, request id), and each job gets a copy with its own task id and arguments. Messages
    go to the queue by name through the anonymous exchange, as send_task routes a queue name on Redis.

    The task id is the job's id, at every publish of the job (first, relay, retry, redrive,
    broker-loss repair), as Celery's own retries keep theirs: an operator finds the job in
    Flower by its id, and Flower's view of it follows the latest attempt. Each publish is
    still told apart by its message's delivery tag (lifecycle.lease_seed)."""

    def __init__(self) -> None:
        self.amqp = celery_app.amqp
        self.send_events = bool(celery_app.conf.task_send_sent_event)
        self._envelopes: dict[tuple[str, str, str], tuple[str, str]] = {}

    def redis_envelope(self, kind: str, job_id: str, request_id: str, queue: str) -> str:
        """_redis_envelope of build's message, from a text made once per (kind, request id, queue)
        where only the job's id, its body and the delivery tag change: a tenth of a batch's time."""
        template = self._envelopes.get((kind, request_id, queue))
        if template is None:
            if _PLACEHOLDER_MARK in kind or _PLACEHOLDER_MARK in request_id:
                headers, properties, body, _ = self.build(kind, job_id, request_id)
                return _redis_envelope(body, headers, {**properties, "delivery_mode": 2}, "", queue)
            headers, properties, body, _ = self.build(kind, _JOB_ID, request_id)
            envelope = _redis_envelope(_BODY, headers, {**properties, "delivery_mode": 2}, "", queue, encoded=True)
            template = self._envelopes[(kind, request_id, queue)] = (json_dumps(body), envelope)
        body_text, envelope = template
        encoded = base64.b64encode(body_text.replace(_JOB_ID, job_id).encode()).decode()
        return envelope.replace(_JOB_ID, job_id).replace(_BODY, encoded, 1).replace(_TAG, uuid(), 1)

    def build(self, kind: str, job_id: str, request_id: str) -> tuple[dict, dict, tuple, dict | None]:
        headers, properties, body = _template(kind, os.getpid(), celery_app.thread_oid)
        task_id = job_id
        args = [job_id]
        argsrepr = repr(args)
        headers = {**headers, "id": task_id, "root_id": task_id, "argsrepr": argsrepr, **trace_headers(request_id)}
        if request_id:
            headers["request_id"] = request_id
        properties = {**properties, "correlation_id": task_id}
        sent_event = None
        if self.send_events:
            sent_event = {
                "uuid": task_id,
                "root_id": task_id,
                "parent_id": None,
                "name": kind,
                "args": argsrepr,
                "kwargs": headers["kwargsrepr"],
                "retries": 0,
                "eta": None,
                "expires": None,
            }
        return headers, properties, (args, *body[1:]), sent_event


@functools.lru_cache(maxsize=256)
def _template(kind: str, pid: int, reply_to: str) -> tuple[dict[str, Any], dict[str, Any], tuple[Any, ...]]:
    """Celery's message for a kind, built once per process and thread (its origin header
    names the process, reply_to the thread, as send_task's would): as_task_v2 was most of a
    single submit's publish."""
    headers, properties, body, _ = celery_app.amqp.as_task_v2(
        "", kind, args=[], reply_to=reply_to, ignore_result=None, create_sent_event=False
    )
    return headers, properties, body


_event_dispatcher: Any = None


def _events() -> Any:
    # Like Celery's own: not enabled, since every publish hands it the producer to use.
    global _event_dispatcher
    if _event_dispatcher is None:
        _event_dispatcher = celery_app.events.Dispatcher(enabled=False)
    return _event_dispatcher


def _publish_all(batch: list[JobMessage], *, windowed: bool = False) -> list[JobMessage]:
    """Publish the jobs through one producer; returns those published: all of them, or with
    `windowed`, those their queue's window had room for (apps.jobs.dispatch). Raises when
    the broker is unreachable. With sent events on (Flower), each job's `task-sent` event
    goes too."""
    with celery_app.producer_or_acquire() as producer:
        # Connect (or fail) fast: kombu would otherwise retry the connection for seconds
        # before the first declare, holding the request while Redis is away.
        producer.connection.ensure_connection(**_CONNECT_RETRY_POLICY)
        if producer.connection.transport.driver_type == "redis":
            return _publish_redis_pipeline(producer, batch, windowed=windowed)
        return _publish_kombu_batch(producer, batch)


def _task_sent_event(events: Any, sent_event: dict[str, Any], queue: str) -> dict[str, Any]:
    """What EventDispatcher.publish("task-sent", ...) would send for a job."""
    sent_event.update({"queue": queue, "exchange": "", "routing_key": queue})
    return Event(
        "task-sent",
        hostname=events.hostname,
        utcoffset=utcoffset(),
        pid=events.pid,
        clock=events.clock.forward(),
        **sent_event,
    )


def _publish_kombu_batch(producer: Any, batch: list[JobMessage], *, windowed: bool = False) -> list[JobMessage]:
    """Any transport: kombu's Producer.publish for each message, in one kombu batch. Only the
    Redis path keeps windows (`windowed` is ignored here): every message goes."""
    messages = _Messages()
    events = _events() if messages.send_events else None
    declared: set[str] = set()
    with producer.batch(max_size=2 * len(batch) + 2):
        for job_id, kind, queue, request_id in batch:
            headers, properties, body, sent_event = messages.build(kind, str(job_id), request_id)
            producer.publish(
                body,
                exchange="",
                routing_key=queue,
                serializer="json",
                headers=headers,
                delivery_mode=2,
                declare=None if queue in declared else [messages.amqp.queues[queue]],
                retry=False,
                **properties,
            )
            declared.add(queue)
            if events is not None and sent_event is not None:
                producer.publish(
                    _task_sent_event(events, sent_event, queue),
                    routing_key="task.sent",
                    exchange=events.exchange.name,
                    retry=False,
                    declare=None if "\0events" in declared else [events.exchange],
                    serializer=events.serializer,
                    headers=events.headers,
                    delivery_mode=events.delivery_mode,
                )
                declared.add("\0events")
    return batch


# A message template's placeholders (_Messages.redis_envelope): in no UUID, delivery tag or base64.
_PLACEHOLDER_MARK, _JOB_ID, _BODY, _TAG = "@@", "@@job-id@@", "@@body@@", "@@delivery-tag@@"


def _redis_envelope(payload: Any, headers: dict, props: dict, exchange: str, key: str, encoded: bool = False) -> str:
    """A message as kombu's Redis transport stores it: Channel.prepare_message, then basic_publish's
    base64 body, delivery tag and delivery info (`encoded`: a template's, placeholders for both)."""
    return json_dumps(
        {
            "body": payload if encoded else base64.b64encode(json_dumps(payload).encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                **props,
                "delivery_info": {"exchange": exchange, "routing_key": key},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": _TAG if encoded else uuid(),
            },
        }
    )


def _declare_once(producer: Any, entity: Any) -> None:
    """kombu's maybe_declare, which binds a copy of the entity on every call before it looks in
    the connection's cache (a tenth of a submit's publish): here the cache is looked in first."""
    declared = producer.connection.declared_entities
    if declared is not None and entity.can_cache_declaration and hash(entity) in declared:
        return
    producer.maybe_declare(entity)


def _publish_redis_pipeline(producer: Any, batch: list[JobMessage], *, windowed: bool = False) -> list[JobMessage]:
    """Redis: the messages kombu would write, written in one pipeline, without
    Producer.publish's per-message Python (twice per job with sent events).
    tests/unit/jobs/test_batch.py holds these messages and events equal to Celery's own.

    `windowed`: each queue's messages go through the window's script instead
    (apps.jobs.dispatch.WINDOW_PUSH), in the same round trip, which pushes those the window
    has room for; returns the messages published."""
    messages = _Messages()
    events = _events() if messages.send_events else None
    channel = producer.channel
    for queue in {message.queue for message in batch}:
        _declare_once(producer, messages.amqp.queues[queue])
    if events is not None:
        _declare_once(producer, events.exchange)
        event_topic = channel._get_publish_topic(events.exchange.name, "task.sent")
        event_properties = {"delivery_mode": events.delivery_mode}
    by_queue: dict[str, list[tuple[JobMessage, str, dict | None]]] = {}
    pipe = channel.client.pipeline(transaction=False)
    for message in batch:
        job_id, kind, queue, request_id = message
        # Priority 0: the queue's own list (kombu suffixes only other priorities).
        envelope = messages.redis_envelope(kind, str(job_id), request_id, queue)
        sent_event = messages.build(kind, str(job_id), request_id)[3] if events is not None else None
        if windowed:
            by_queue.setdefault(queue, []).append((message, envelope, sent_event))
            continue
        pipe.lpush(queue, envelope)
        if events is not None and sent_event is not None:
            event = _task_sent_event(events, sent_event, queue)
            envelope = _redis_envelope(event, events.headers, event_properties, events.exchange.name, "task.sent")
            pipe.publish(event_topic, envelope)
    if not windowed:
        pipe.execute()
        return batch
    from apps.jobs.dispatch import WAITING_TTL_SECONDS, window_keys, window_push_script

    # EVALSHA straight on the pipeline: redis-py's own script call in a pipeline would ask
    # SCRIPT EXISTS first, a second round trip on every submit. A Redis that does not know the
    # script (restarted) refuses it, having pushed nothing, and that queue goes once more.
    push = window_push_script()
    for queue, items in by_queue.items():
        keys = window_keys(queue)
        pipe.evalsha(push.sha, len(keys), *keys, WAITING_TTL_SECONDS, *(e for _, e, _ in items))
    replies = pipe.execute(raise_on_error=False)
    for position, (queue, items) in enumerate(by_queue.items()):
        if isinstance(replies[position], NoScriptError):
            args = [WAITING_TTL_SECONDS, *(e for _, e, _ in items)]
            replies[position] = push(keys=window_keys(queue), args=args, client=channel.client)
        elif isinstance(replies[position], Exception):
            raise replies[position]
    sent: list[JobMessage] = []
    for (queue, items), taken in zip(by_queue.items(), replies, strict=True):
        sent.extend(message for message, _, _ in items[: int(taken)])
        if events is not None:
            for _, _, sent_event in items[: int(taken)]:
                if sent_event is not None:
                    event = _task_sent_event(events, sent_event, queue)
                    pipe.publish(
                        event_topic,
                        _redis_envelope(event, events.headers, event_properties, events.exchange.name, "task.sent"),
                    )
    if events is not None:
        pipe.execute()
    return sent


def publish_jobs_rollback_unsafe(
    jobs: Iterable[JobMessage | tuple[Any, str, str, str]], *, windowed: bool = False
) -> list[str]:
    """Publish the jobs' messages now and mark them published; returns the ids
    that reached the broker. Unsafe inside a transaction that may still roll back: a worker
    could receive a job that never existed. Use `job_publish_on_commit` there.
    `windowed`: only what each queue's window has room for goes now; the rest stays
    unpublished for the dispatcher (apps.jobs.dispatch)."""
    batch = [message if type(message) is JobMessage else JobMessage.row(message) for message in jobs]
    if not batch:
        return []
    try:
        published = _publish_all(batch, windowed=windowed)
    except Exception as exc:  # the broker is unreachable; the relay will publish them
        # Some messages may have reached Redis before the error: the relay sends those again,
        # and the claim drops the duplicate.
        logger.warning(
            "could not publish %d job(s) (first %s, %s): %s; the relay will publish them",
            len(batch),
            batch[0].id,
            batch[0].kind,
            exc,
        )
        return []
    sent = [message.id for message in published]
    if sent:
        _mark_published(sent)
    return sent


def _mark_published(job_ids: list[str]) -> None:
    """One UPDATE marks the whole batch published. On PostgreSQL it is a prepared statement
    with the ids as one array parameter: the same text for any batch size, so it is planned
    once per connection, and no ORM compile on every submit.

    Its own transaction's commit does not wait for the WAL flush (synchronous_commit off; the
    INSERT's still does, so a 202 is durable, as does a caller's transaction around it). A mark
    a PostgreSQL crash loses leaves the job as a web process dying between publish and mark
    does: the dispatcher publishes it again and the claim drops the duplicate. The wait bought
    nothing, and the mark is not HOT (published_at is in job_dispatch's and job_published_by_queue's predicates)."""
    from apps.jobs.models import Job

    if connection.vendor != "postgresql":
        Job.objects.filter(id__in=job_ids, published_at__isnull=True).update(published_at=timezone.now())
        return
    with prepared_cursor() as cursor:
        sql = _mark_published_sql(Job._meta.db_table, asynchronous=not connection.in_atomic_block)
        cursor.execute(sql, [timezone.now(), job_ids])


@functools.cache
def _mark_published_sql(table: str, *, asynchronous: bool) -> str:
    q = connection.ops.quote_name
    sql = f'UPDATE {q(table)} SET "published_at" = %s WHERE "id" = ANY(%s::uuid[]) AND "published_at" IS NULL'
    if asynchronous:
        # Once, before any row (an uncorrelated subquery); local to this statement's transaction.
        sql += " AND (SELECT set_config('synchronous_commit', 'off', true)) = 'off'"
    return sql


def job_publish_on_commit(jobs: Iterable[JobMessage]) -> None:
    """Publish after the surrounding transaction commits (immediately when there is none), as
    far as each queue's window has room (apps.jobs.dispatch): the rest waits in PostgreSQL for
    its turn. Jobs of a paused queue or kind stay unpublished, held in PostgreSQL until a
    resume (apps.jobs.pauses: this process's view of the pauses, at most a second old)."""
    from apps.jobs.pauses import messages_unpaused

    batch = list(jobs)
    if batch:
        transaction.on_commit(lambda: publish_jobs_rollback_unsafe(messages_unpaused(batch), windowed=True))


def dead_letter_publish_rollback_unsafe(letters: Iterable[tuple[int, str, str]]) -> int:
    """Put (letter id, job id, kind) messages on the `dead_letter` queue now; returns how
    many were sent. Each has a task id of its own, not the job's: with task-sent events on,
    Flower would otherwise rename the job's task after this mirror (a PENDING event takes every
    field; celery/events/state.py), and nothing ever runs it."""
    sent = 0
    for letter_id, job_id, kind in letters:
        try:
            celery_app.send_task(
                DEAD_LETTER_TASK,
                args=[letter_id, job_id, kind],
                queue=DEAD_LETTER_QUEUE,
                retry=True,
                retry_policy=_PUBLISH_RETRY_POLICY,
            )
        except Exception as exc:
            logger.warning("could not mirror dead letter %s to the %s queue: %s", letter_id, DEAD_LETTER_QUEUE, exc)
            break
        sent += 1
    return sent


def dead_letter_publish_on_commit(*, dead_letter_id: int, job_id: str, kind: str) -> None:
    """Mirror a new dead letter onto the `dead_letter` queue, for Flower and Redis-side tools.
    The database row is the record; this message is its visible shadow."""
    transaction.on_commit(lambda: dead_letter_publish_rollback_unsafe([(dead_letter_id, job_id, kind)]))

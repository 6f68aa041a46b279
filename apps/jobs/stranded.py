"""Stranded jobs: queued jobs whose message is gone while Redis kept the rest of its data.

A message leaves its queue without a claim when an operator purges the queue (`celery purge`),
revokes a task that no revoke handler cancelled, or deletes it by hand (LREM, DEL), or when a
worker dies holding a message it had not yet started. The job stays `queued` and published,
so neither the relay (unpublished jobs) nor the broker-loss repair (a Redis that lost
everything) sends it again. Each check (beat's reconciler, at most every
STRANDED_CHECK_SECONDS) finds them from what Redis and PostgreSQL say at one moment:

1. Redis first, in one MULTI: per queue, the length of its lists and the message at its tail
   (the next one a worker takes: kombu LPUSHes and workers BRPOP, so a list is FIFO), plus
   kombu's `unacked` hash and its `unacked_index` (the messages workers hold, and since when).
2. Then PostgreSQL: per queue, the queued jobs published longest ago (at most STRANDED_BATCH,
   through the partial index job_published_by_queue), and the publish time of each tail's job.

A job published more than STRANDED_GRACE_SECONDS before the Redis snapshot is stranded when
no worker holds a message of it and

(a) its queue is empty, or
(b) the message at its queue's tail was published more than the grace after it: FIFO says
    the job's message, had it stayed in the list, would have been taken before that one;

or when a worker has held its only messages longer than the grace without claiming it (a
worker holds a message only while it runs it, so that worker died, and Redis would give the
message back only after its visibility timeout, an hour).

Publish times come from PostgreSQL (`published_at`, stamped after the message is on the
broker, and stamped again when this sweep or the broker-loss repair publishes a job again).
The grace covers the gap between a push and its stamp and the clocks of the machines. A job
published after the snapshot is never a candidate (its stamp is later than the snapshot), so
the one race left is a message in flight between a worker's BRPOP and its `unacked` write,
microseconds: it gets a second message, which the claim drops. A message kombu put back at the
tail (a restore after a worker's death or shutdown) says nothing about order, so rule (b)
waits until it has been taken.
"""

from __future__ import annotations

import ast
import base64
import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.transport import redis as kombu_redis

from apps.core.redis import redis_client
from apps.jobs.models import Job, JobStatus
from apps.jobs.pauses import job_queues, unpaused
from apps.jobs.publish import JobMessage, publish_jobs_rollback_unsafe

logger = logging.getLogger("apps.jobs.stranded")

# Queued jobs looked at per queue and check: the oldest published, through an index.
STRANDED_BATCH = 1000

# kombu's Redis transport: the lists of a queue (one per priority step; ours all publish at
# priority 0, the queue's own name) and the hash of delivered, unacknowledged messages.
_PRIORITY_SEPARATOR = kombu_redis.Channel.sep
_PRIORITY_STEPS = kombu_redis.PRIORITY_STEPS
_UNACKED = kombu_redis.Channel.unacked_key
_UNACKED_INDEX = kombu_redis.Channel.unacked_index_key


def queue_lists(queue: str) -> list[str]:
    """The Redis lists of a queue, one per priority step (kombu's names)."""
    return [queue if step == 0 else f"{queue}{_PRIORITY_SEPARATOR}{step}" for step in _PRIORITY_STEPS]


def job_id_of(payload: Any) -> str | None:
    """The job a kombu message (as kombu keeps it in Redis) is for: its task's first argument,
    from the body, else from the `argsrepr` header. None for anything that is not a job's."""
    if not isinstance(payload, dict):
        return None
    candidate: Any = None
    try:
        body = payload.get("body")
        if (payload.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        candidate = args[0] if args else None
    except Exception:
        try:
            args = ast.literal_eval((payload.get("headers") or {}).get("argsrepr") or "")
            candidate = args[0] if args else None
        except Exception:
            return None
    try:
        return str(uuid.UUID(str(candidate)))
    except (TypeError, ValueError):
        return None


def _redelivered(payload: dict[str, Any]) -> bool:
    delivery = (payload.get("properties") or {}).get("delivery_info") or {}
    return bool((payload.get("headers") or {}).get("redelivered") or delivery.get("redelivered"))


@dataclass(frozen=True)
class QueueView:
    """One queue at the snapshot: how many messages wait, and the job of the message a worker
    takes next (None when unknown: no message, not a job's, or one kombu put back)."""

    depth: int
    oldest_job_id: str | None = None
    # Messages wait in a list of another priority step too: FIFO holds only within a list.
    other_lists: bool = False


@dataclass(frozen=True)
class BrokerView:
    """What Redis says at one moment. `held`: job id -> when a worker took the most recent of
    its unacknowledged messages (Unix time)."""

    taken_at: datetime
    queues: dict[str, QueueView]
    held: dict[str, float] = field(default_factory=dict)


def broker_view(queues: Iterable[str]) -> BrokerView:
    """The snapshot, in one MULTI/EXEC: every queue's lists and tail, and the unacked hash
    (as big as the messages workers hold: one per running job, plus the ones Redis keeps for
    a dead worker until its visibility timeout)."""
    queues = list(queues)
    client = redis_client()
    taken_at = timezone.now()
    pipe = client.pipeline(transaction=True)
    for queue in queues:
        for name in queue_lists(queue):
            pipe.llen(name)
        pipe.lindex(queue, -1)
    pipe.hgetall(_UNACKED)
    pipe.zrange(_UNACKED_INDEX, 0, -1, withscores=True)
    replies = pipe.execute()
    views: dict[str, QueueView] = {}
    per_queue = len(_PRIORITY_STEPS) + 1
    for i, queue in enumerate(queues):
        lengths = [int(n) for n in replies[i * per_queue : i * per_queue + len(_PRIORITY_STEPS)]]
        tail = replies[i * per_queue + len(_PRIORITY_STEPS)]
        oldest = None
        if tail is not None:
            try:
                payload = json.loads(tail)
            except ValueError:
                payload = None
            if isinstance(payload, dict) and not _redelivered(payload):
                oldest = job_id_of(payload)
        views[queue] = QueueView(depth=sum(lengths), oldest_job_id=oldest, other_lists=any(lengths[1:]))
    unacked, index = replies[-2], replies[-1]
    delivered_at = {(tag.decode() if isinstance(tag, bytes) else tag): score for tag, score in index}
    now = time.time()
    held: dict[str, float] = {}
    for tag, raw in unacked.items():
        try:
            payload = json.loads(raw)[0]
        except (ValueError, TypeError, IndexError, KeyError):
            continue
        job_id = job_id_of(payload)
        if job_id is None:
            continue
        # A message without its index entry was just taken (or is being acknowledged): recent.
        at = delivered_at.get(tag.decode() if isinstance(tag, bytes) else tag, now)
        held[job_id] = max(held.get(job_id, at), at)
    return BrokerView(taken_at=taken_at, queues=views, held=held)


@dataclass(frozen=True)
class Candidate:
    id: str
    kind: str
    queue: str
    request_id: str
    published_at: datetime

    def message(self) -> JobMessage:
        return JobMessage(self.id, self.kind, self.queue, self.request_id)


def stranded_decide(
    *,
    candidates: Iterable[Candidate],
    view: BrokerView,
    oldest_published: dict[str, datetime],
    grace: timedelta,
) -> list[Candidate]:
    """The rules of the module docstring, as a plain function. `oldest_published`: per queue,
    when the job of the message at its tail was published (absent: unknown)."""
    cutoff = view.taken_at - grace
    stranded = []
    for job in candidates:
        if job.published_at >= cutoff:
            continue  # too recent to judge
        held_since = view.held.get(job.id)
        if held_since is not None:
            if held_since < cutoff.timestamp():
                stranded.append(job)  # held, never claimed: its worker died
            continue
        queue = view.queues.get(job.queue)
        if queue is None:
            continue
        if queue.depth == 0:
            stranded.append(job)
            continue
        oldest = oldest_published.get(job.queue)
        if oldest is not None and not queue.other_lists and job.published_at < oldest - grace:
            stranded.append(job)
    return stranded


def jobs_publish_again(messages: list[JobMessage]) -> list[str]:
    """Publish queued jobs that were published before, and stamp them published now:
    `published_at` says when a job's latest message went out, which rule (b) compares (the
    publisher stamps only a job never stamped). Returns the ids that reached the broker."""
    sent = publish_jobs_rollback_unsafe(messages)
    if sent:
        Job.objects.filter(id__in=sent, status=JobStatus.QUEUED).update(published_at=timezone.now())
    return sent


def _candidates(queue: str, cutoff: datetime, limit: int) -> list[Candidate]:
    rows = (
        Job.objects.filter(status=JobStatus.QUEUED, queue=queue, published_at__lt=cutoff)
        # A paused job's message is meant to go: a worker hands it back (apps.jobs.pauses).
        .filter(unpaused())
        .order_by("published_at")
        .values_list("id", "kind", "queue", "request_id", "published_at")[:limit]
    )
    return [Candidate(str(job_id), kind, q, request_id, at) for job_id, kind, q, request_id, at in rows]


def _oldest_published(view: BrokerView) -> dict[str, datetime]:
    """When each tail's job was last published, if before the snapshot (a stamp after it is
    not this message's: the job was published again meanwhile)."""
    tails = {q.oldest_job_id: name for name, q in view.queues.items() if q.oldest_job_id}
    if not tails:
        return {}
    rows = Job.objects.filter(id__in=list(tails), published_at__isnull=False).values_list("id", "published_at")
    return {tails[str(job_id)]: at for job_id, at in rows if at <= view.taken_at}


def jobs_republish_stranded(
    *, fence: Any = None, queues: Iterable[str] | None = None, limit: int = STRANDED_BATCH
) -> int:
    """One check: publish every stranded job again (at most `limit` per queue). Returns how
    many were published."""
    grace = timedelta(seconds=settings.STRANDED_GRACE_SECONDS)
    with transaction.atomic():
        if fence is not None:
            fence()  # holds off another leader until this commits: one sweep republishes
        view = broker_view(queues or job_queues())  # Redis before PostgreSQL: see above
        cutoff = view.taken_at - grace
        candidates = [job for queue in view.queues for job in _candidates(queue, cutoff, limit)]
        if not candidates:
            return 0
        stranded = stranded_decide(
            candidates=candidates, view=view, oldest_published=_oldest_published(view), grace=grace
        )
        if not stranded:
            return 0
        sent = jobs_publish_again([job.message() for job in stranded])
    if sent:
        by_queue: dict[str, int] = {}
        for job in stranded:
            by_queue[job.queue] = by_queue.get(job.queue, 0) + 1
        logger.warning(
            "published again %d queued job(s) whose message was gone (purged, revoked, deleted or held by a "
            "dead worker): %s; first %s",
            len(sent),
            ", ".join(f"{queue} {n}" for queue, n in sorted(by_queue.items())),
            sent[0],
        )
    return len(sent)


_last_check = 0.0


def jobs_republish_stranded_when_due(*, fence: Any = None) -> int:
    """The reconciler's step: a check at most every STRANDED_CHECK_SECONDS, except that a
    check which found stranded jobs is followed by another at the next sweep, until one finds
    none (a purged backlog goes out STRANDED_BATCH per queue and sweep)."""
    global _last_check
    now = time.monotonic()
    if _last_check and now - _last_check < settings.STRANDED_CHECK_SECONDS:
        return 0
    _last_check = now
    republished = jobs_republish_stranded(fence=fence)
    if republished:
        _last_check = 0.0
    return republished

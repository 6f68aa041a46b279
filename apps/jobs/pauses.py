"""Pausing a queue or a kind: its jobs are accepted and wait `queued` in PostgreSQL, none
starts, and resuming lets them run.

Where a pause takes hold, and how fresh each place's view of it is:

- The claim (lifecycle/store.py, job_claim_update) refuses a job of a paused queue or kind in
  its one conditional UPDATE (`AND NOT <paused_sql>`), so once `queue_pause` has committed no
  worker starts such a job, whatever the process: no cache, no extra query. A message that
  finds its job paused hands the job back to PostgreSQL (`job_hand_back`: published_at NULL,
  no attempt spent), one more UPDATE on the path that claimed nothing.
- The relay, the broker-loss repair and the stranded-job sweep select only jobs that are not
  paused (`unpaused()`, a NOT EXISTS in their own statement): always current.
- The publish after a submission's commit (publish.job_publish_on_commit) leaves jobs of a
  paused queue or kind off the broker, from this process's view of the pauses
  (`pause_set()`): read from a Redis key at most once every PAUSE_CACHE_SECONDS, the key being
  written by every pause and resume and rewritten by each reconciler sweep (Redis keeps
  nothing on disk). That view may be up to PAUSE_CACHE_SECONDS old (plus a sweep when Redis
  lost the key); a job published in that window is handed back by the claim above, never
  started. A Redis read rather than a PostgreSQL one keeps the submit path's query count fixed.
- Resume deletes the row and fills the resumed queues' windows at once (apps.jobs.dispatch,
  every client in turn); the dispatcher sends the rest as the windows drain.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from redis.exceptions import RedisError

from apps.core.errors import NotFound
from apps.core.redis import key, redis_client
from apps.jobs.models import Job, JobStatus, Pause, Priority
from apps.jobs.registry import IO_QUEUES, registry

logger = logging.getLogger("apps.jobs.pauses")

PAUSES_KEY = key("pauses")
# How old a process's view of the pauses may be on the publish-after-commit path.
PAUSE_CACHE_SECONDS = 1.0

QUEUE = Pause.Target.QUEUE
KIND = Pause.Target.KIND


# --- what is paused --------------------------------------------------------------------------


@dataclass(frozen=True)
class PauseSet:
    queues: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()

    def holds(self, *, queue: str, kind: str) -> bool:
        return queue in self.queues or kind in self.kinds

    def encode(self) -> str:
        return json.dumps({"queues": sorted(self.queues), "kinds": sorted(self.kinds)})

    @classmethod
    def decode(cls, raw: bytes | str | None) -> PauseSet:
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(frozenset(data.get("queues", ())), frozenset(data.get("kinds", ())))


def job_queues() -> list[str]:
    """Every queue a job may be published to: the priorities', the I/O-bound kinds' (one per
    priority), and the kinds' own."""
    names = {priority.value for priority in Priority} | set(IO_QUEUES)
    names.update(kind.queue for kind in registry if kind.queue)
    return sorted(names)


def pause_set_read() -> PauseSet:
    """The pauses as PostgreSQL has them (one query)."""
    rows = list(Pause.objects.values_list("target_type", "name"))
    return PauseSet(
        frozenset(name for target, name in rows if target == QUEUE),
        frozenset(name for target, name in rows if target == KIND),
    )


class _Cache:
    """This process's view of the pauses, from the Redis key (see the module's docstring)."""

    def __init__(self) -> None:
        self.value = PauseSet()
        self.read_at = 0.0
        self.lock = threading.Lock()

    def get(self) -> PauseSet:
        now = time.monotonic()
        if now - self.read_at < PAUSE_CACHE_SECONDS:
            return self.value
        with self.lock:
            if now - self.read_at >= PAUSE_CACHE_SECONDS:
                try:
                    self.value = PauseSet.decode(redis_client().get(PAUSES_KEY))
                except (RedisError, ValueError) as exc:
                    # Keep the last view: the claim still refuses a paused job.
                    logger.warning("could not read the pauses from Redis: %s", exc)
                self.read_at = now
        return self.value

    def set(self, value: PauseSet) -> None:
        with self.lock:
            self.value, self.read_at = value, time.monotonic()

    def forget(self) -> None:
        with self.lock:
            self.value, self.read_at = PauseSet(), 0.0


_cache = _Cache()


def pause_set() -> PauseSet:
    """This process's view of the pauses, at most PAUSE_CACHE_SECONDS old."""
    return _cache.get()


def pause_cache_forget() -> None:
    """Drop this process's view (tests; the next look reads Redis)."""
    _cache.forget()


def pause_mirror_write(value: PauseSet | None = None) -> PauseSet:
    """Write the pauses (PostgreSQL's, unless given) to the Redis key every process reads;
    the reconciler calls it each sweep, so a Redis that lost its data gets it back."""
    value = pause_set_read() if value is None else value
    redis_client().set(PAUSES_KEY, value.encode())
    _cache.set(value)
    return value


def unpaused() -> Q:
    """A filter for Job querysets: jobs of neither a paused queue nor a paused kind, as a NOT
    EXISTS inside the caller's own statement (always current, no query of its own)."""
    paused = Pause.objects.filter(
        Q(target_type=QUEUE, name=OuterRef("queue")) | Q(target_type=KIND, name=OuterRef("kind"))
    )
    return ~Q(Exists(paused))


@functools.cache
def paused_sql() -> str:
    """The same test in SQL for a statement on the jobs table (the claim, the hand-back)."""
    q = connection.ops.quote_name
    job, pause = q(Job._meta.db_table), q(Pause._meta.db_table)
    return (
        f"EXISTS (SELECT 1 FROM {pause} p WHERE (p.target_type = 'queue' AND p.name = {job}.queue) "
        f"OR (p.target_type = 'kind' AND p.name = {job}.kind))"
    )


# --- pause and resume ------------------------------------------------------------------------


@dataclass(frozen=True)
class PauseState:
    target_type: str
    name: str
    paused: bool
    paused_by: str = ""
    paused_at: datetime | None = None


def _check_known(target_type: str, name: str) -> None:
    if target_type == QUEUE and name not in job_queues():
        raise NotFound(f"No queue is named {name!r}.", code="unknown_queue")
    if target_type == KIND and name not in registry:
        raise NotFound(f"No kind is named {name!r}.", code="unknown_kind")


def pause_state(*, target_type: str, name: str) -> PauseState:
    _check_known(target_type, name)
    row = Pause.objects.filter(target_type=target_type, name=name).first()
    if row is None:
        return PauseState(target_type, name, paused=False)
    return PauseState(target_type, name, paused=True, paused_by=row.paused_by, paused_at=row.paused_at)


def _pause(target_type: str, name: str, actor: str) -> PauseState:
    _check_known(target_type, name)
    try:
        with transaction.atomic():
            _, created = Pause.objects.get_or_create(
                target_type=target_type, name=name, defaults={"paused_by": actor[:150]}
            )
    except IntegrityError:  # two pauses raced: the other one's row stands
        created = False
    if created:
        logger.warning("%s %s paused by %s", target_type, name, actor or "?")
    transaction.on_commit(_mirror_quietly)
    return pause_state(target_type=target_type, name=name)


def _resume(target_type: str, name: str, actor: str) -> PauseState:
    _check_known(target_type, name)
    deleted, _ = Pause.objects.filter(target_type=target_type, name=name).delete()
    if deleted:
        logger.warning("%s %s resumed by %s", target_type, name, actor or "?")
    scope = {"queue": name} if target_type == QUEUE else {"kind": name}
    transaction.on_commit(lambda: _after_resume(scope))
    return PauseState(target_type, name, paused=False)


def _after_resume(scope: dict[str, str]) -> None:
    _mirror_quietly()
    try:
        jobs_release_held(**scope)
    except Exception:  # the answer stands: the row is gone, and the relay publishes them
        logger.exception("could not publish the held jobs of %s after its resume; the relay will", scope)


def queue_pause(*, name: str, actor: str = "") -> PauseState:
    """Pause a queue (idempotent). NotFound for a queue no job can be published to."""
    return _pause(QUEUE, name, actor)


def queue_resume(*, name: str, actor: str = "") -> PauseState:
    """Resume a queue (idempotent) and publish its held jobs that nothing else holds."""
    return _resume(QUEUE, name, actor)


def kind_pause(*, name: str, actor: str = "") -> PauseState:
    """Pause a kind (idempotent). NotFound for a kind the registry does not know."""
    return _pause(KIND, name, actor)


def kind_resume(*, name: str, actor: str = "") -> PauseState:
    """Resume a kind (idempotent) and publish its held jobs that nothing else holds."""
    return _resume(KIND, name, actor)


def _mirror_quietly() -> None:
    try:
        pause_mirror_write()
    except RedisError as exc:  # the next reconciler sweep writes it
        logger.warning("could not write the pauses to Redis: %s", exc)


def jobs_release_held(*, queue: str | None = None, kind: str | None = None) -> int:
    """Let the held jobs of a resumed queue or kind go: fill the queues they wait in, as far as
    each window has room, from every client in turn (apps.jobs.dispatch; a job of a resumed
    queue may still be held by its kind's pause). Returns how many reached the broker; the
    dispatcher sends the rest."""
    from apps.jobs.dispatch import queues_fill

    if queue is not None:
        queues = [queue]
    else:
        k = registry.get(kind) if kind in registry else None
        queues = sorted({k.queue_for(p) for p in Priority.values}) if k is not None else job_queues()
    return queues_fill(queues)


def messages_unpaused(messages: Iterable[Any]) -> list[Any]:
    """The messages (JobMessage) whose job this process's view of the pauses lets go to the
    broker now; the others stay unpublished in PostgreSQL for the relay after a resume."""
    batch = list(messages)
    paused = pause_set()
    if not paused.queues and not paused.kinds:
        return batch
    return [m for m in batch if not paused.holds(queue=m.queue, kind=m.kind)]


# --- a message that reaches a worker for a paused job ------------------------------------------


def job_hand_back(*, job_id: str) -> bool | None:
    """The claim found nothing: if the job is still queued and due, mark it unpublished (no
    attempt spent) so the relay publishes it when no pause holds it. Returns whether a pause
    holds it (True), False when none does (a resume came between the claim and this), or None
    when the job is not a queued, due one (a duplicate or stale message: nothing to do)."""
    now = timezone.now()
    pk = Job._meta.pk
    sql = (
        f"UPDATE {connection.ops.quote_name(Job._meta.db_table)} SET published_at = NULL, updated_at = %s "
        "WHERE id = %s AND status = %s AND (run_at IS NULL OR run_at <= %s) "
        f"RETURNING {paused_sql()}"
    )
    stamp = Job._meta.get_field("updated_at").get_db_prep_value(now, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, [stamp, pk.get_db_prep_value(uuid.UUID(str(job_id)), connection), JobStatus.QUEUED, stamp])
        row = cursor.fetchone()
    return None if row is None else bool(row[0])

"""Fair dispatch (guarantee 12): jobs wait in PostgreSQL, and Redis carries a bounded window
per queue, filled from each client in turn.

Redis queues are first in, first out: a client that submits 20,000 jobs would put every other
client's job of the same queue behind all of them. So a queue's messages in Redis are capped
at its *window*, about DISPATCH_WINDOW_SECONDS of what the queue drains (at least
DISPATCH_WINDOW_MIN, at most DISPATCH_WINDOW_MAX), and the rest of the backlog waits in
PostgreSQL, unpublished. The dispatcher tops each window up with one job of every client that
has jobs waiting, then a second of each, and so on: a client with one job waits behind at most
one window, whatever another client's backlog.

- **At submit** (`window_push_script`, run by apps.jobs.publish after the commit), a job goes
  to Redis at once when its queue's window has room and no job of the queue waits for its
  turn; an idle platform starts a job as fast as before. Otherwise it stays unpublished and
  the queue is marked *waiting*.
- **The dispatcher** (`dispatch_pass`) runs in the control loop's leader: a thread of the beat
  process looks every DISPATCH_INTERVAL_SECONDS at the waiting queues and fills those whose
  window has half free; once a second it sizes every window from the drain rate, fills
  every queue (this is also the outbox relay: a publish that never happened, a retry or a
  deferred job now due, a workflow's released job), and recounts the held jobs.
- **Admission** counts a queue's messages plus its held jobs (apps.jobs.flow), so `429` still
  answers the real backlog.

Without a dispatcher (no beat has run for a few seconds) the window keys expire and every
job is published at submit, as before; held jobs wait for the next leader.

The Redis keys, all per queue: the window's size, how many jobs are held, and the waiting
mark. Only the first expires by itself; a leader rewrites it every second.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, connections
from django.utils import timezone
from redis.commands.core import Script

from apps.core.db import connections_reopen_if_broken
from apps.core.redis import key as redis_key
from apps.core.redis import redis_client
from apps.jobs import flow
from apps.jobs.flow import held_key, window_key
from apps.jobs.models import Job, JobStatus
from apps.jobs.pauses import job_queues, pause_set, paused_sql, unpaused
from apps.jobs.publish import JobMessage, publish_jobs_rollback_unsafe

logger = logging.getLogger("apps.jobs.dispatch")

# A window key outlives a dead leader by this long; then submissions publish at once again.
WINDOW_TTL_SECONDS = 10
# The waiting mark expires too, so a mark left by a dead process costs at most this long.
WAITING_TTL_SECONDS = 5
# Rounds of one fill: each takes an equal share per client; a client with fewer jobs than its
# share leaves room that the next round gives to those with more.
FILL_ROUNDS = 4


def waiting_key(queue: str) -> str:
    return redis_key(f"dispatch:waiting:{queue}")


# Push the first messages the window has room for; mark the queue waiting when some are left.
# KEYS: the queue's list, window, waiting mark, held count. ARGV[1]: the mark's TTL; the rest:
# the messages in order. Without a window key (no dispatcher) every message goes.
WINDOW_PUSH = """
local n = #ARGV - 1
local take = n
local window = redis.call('GET', KEYS[2])
if window then
    if redis.call('EXISTS', KEYS[3]) == 1 then
        take = 0
    else
        take = math.min(n, math.max(0, tonumber(window) - redis.call('LLEN', KEYS[1])))
    end
end
for i = 2, take + 1 do
    redis.call('LPUSH', KEYS[1], ARGV[i])
end
if take < n then
    redis.call('SET', KEYS[3], '1', 'EX', tonumber(ARGV[1]))
end
if take > 0 and window then
    local held = (tonumber(redis.call('GET', KEYS[4])) or 0) - take
    redis.call('SET', KEYS[4], math.max(0, held))
end
return take
"""

# The held count, less `ARGV[1]` just published (never below zero).
_HELD_LESS = """
local held = (tonumber(redis.call('GET', KEYS[1])) or 0) - tonumber(ARGV[1])
redis.call('SET', KEYS[1], math.max(0, held))
return held
"""

# The held count set to a fresh count from PostgreSQL (ARGV[1]) plus what submissions and
# publishes changed since it was read as ARGV[2] (each adds or takes from the key meanwhile).
_HELD_RECOUNT = """
local now = tonumber(redis.call('GET', KEYS[1])) or 0
local value = tonumber(ARGV[1]) + now - tonumber(ARGV[2])
redis.call('SET', KEYS[1], math.max(0, value))
return value
"""

_scripts: dict[str, Script] = {}


def _script(source: str) -> Script:
    script = _scripts.get(source)
    if script is None:
        script = _scripts[source] = redis_client().register_script(source)
    return script


def window_push_script() -> Script:
    return _script(WINDOW_PUSH)


def window_keys(queue: str) -> list[str]:
    """WINDOW_PUSH's keys for a queue."""
    return [queue, window_key(queue), waiting_key(queue), held_key(queue)]


def window_size(queue: str) -> int:
    """DISPATCH_WINDOW_SECONDS of the queue's drain over the last two seconds, within bounds:
    two, so a window grows within a second or two of a backlog's start (a small one means
    small fills, which cost the dispatcher more per job)."""
    rate = flow.drain_rate(queue, seconds=2)
    wanted = math.ceil(rate * settings.DISPATCH_WINDOW_SECONDS)
    return max(settings.DISPATCH_WINDOW_MIN, min(settings.DISPATCH_WINDOW_MAX, wanted))


# --- choosing the next jobs ----------------------------------------------------------------


@dataclass(frozen=True)
class Pick:
    message: JobMessage
    owner_id: int


def _owners_sql() -> str:
    """Each client with a job held for the queue: a loose scan of job_dispatch, one probe per
    client however many jobs each holds."""
    table = connection.ops.quote_name(Job._meta.db_table)
    held = "j.queue = %s AND j.status = 'queued' AND j.published_at IS NULL"
    return (
        f"WITH RECURSIVE o(owner_id) AS ("
        f" (SELECT j.owner_id FROM {table} j WHERE {held} ORDER BY j.owner_id LIMIT 1)"
        f" UNION ALL SELECT (SELECT j.owner_id FROM {table} j WHERE {held}"
        f" AND j.owner_id > o.owner_id ORDER BY j.owner_id LIMIT 1) FROM o WHERE o.owner_id IS NOT NULL"
        f") SELECT owner_id FROM o WHERE owner_id IS NOT NULL"
    )


def _picks_sql() -> str:
    """Up to %s due, unpaused jobs of each listed client, oldest first, interleaved: every
    client's first, then every client's second, up to the room."""
    table = connection.ops.quote_name(Job._meta.db_table)
    return (
        f"SELECT t.id, t.kind, t.queue, t.request_id, t.owner_id FROM unnest(%s::bigint[]) AS o(owner_id)"
        f" CROSS JOIN LATERAL (SELECT id, kind, queue, request_id, owner_id, created_at,"
        f" row_number() OVER (ORDER BY created_at) AS turn FROM {table}"
        f" WHERE queue = %s AND owner_id = o.owner_id AND status = 'queued' AND published_at IS NULL"
        f" AND (run_at IS NULL OR run_at <= %s) AND NOT {paused_sql()}"
        f" ORDER BY created_at LIMIT %s) t ORDER BY t.turn, t.created_at LIMIT %s"
    )


def _picks_postgresql(queue: str, owners: Sequence[int], per_owner: int, room: int, now: datetime) -> list[Pick]:
    with connection.cursor() as cursor:
        cursor.execute(_picks_sql(), [list(owners), queue, now, per_owner, room])
        return [Pick(JobMessage(str(i), k, q, r), o) for i, k, q, r, o in cursor.fetchall()]


def _picks_portable(queue: str, room: int, now: datetime) -> list[Pick]:
    """Other databases (SQLite on one machine): the oldest held jobs, interleaved by client."""
    from django.db.models import Q

    rows = (
        Job.objects.filter(queue=queue, status=JobStatus.QUEUED, published_at__isnull=True)
        .filter(Q(run_at__isnull=True) | Q(run_at__lte=now))
        .filter(unpaused())
        .order_by("created_at")
        .values_list("id", "kind", "queue", "request_id", "owner_id")[: room * FILL_ROUNDS]
    )
    turns: dict[int, int] = defaultdict(int)
    ranked = []
    for position, (i, k, q, r, o) in enumerate(rows):
        turns[o] += 1
        ranked.append((turns[o], position, Pick(JobMessage(str(i), k, q, r), o)))
    return [pick for _, _, pick in sorted(ranked, key=lambda t: t[:2])[:room]]


@dataclass(frozen=True)
class Fill:
    sent: int
    exhausted: bool  # every held job of the queue that may run now is on its way


def queue_fill(queue: str, *, room: int, now: datetime | None = None) -> Fill:
    """Publish up to `room` of the queue's held jobs, from every client in turn."""
    now = now or timezone.now()
    if room <= 0:
        return Fill(0, False)
    sent = 0
    exhausted = False
    if connection.vendor != "postgresql":
        picks = _picks_portable(queue, room, now)
        sent = len(publish_jobs_rollback_unsafe([p.message for p in picks]))
        exhausted = sent == len(picks) < room
    else:
        with connection.cursor() as cursor:
            cursor.execute(_owners_sql(), [queue, queue])
            owners = [row[0] for row in cursor.fetchall()]
        exhausted = not owners
        for _ in range(FILL_ROUNDS):
            if not owners or sent >= room:
                break
            share = math.ceil((room - sent) / len(owners))
            picks = _picks_postgresql(queue, owners, share, room - sent, now)
            published = publish_jobs_rollback_unsafe([p.message for p in picks])
            sent += len(published)
            if len(published) < len(picks):
                break  # the broker went away: the next pass goes on
            taken: dict[int, int] = defaultdict(int)
            for pick in picks:
                taken[pick.owner_id] += 1
            # A client that filled its share may have more; the others are done.
            owners = [owner for owner in owners if taken[owner] >= share]
            exhausted = not owners
    if sent:
        _script(_HELD_LESS)(keys=[held_key(queue)], args=[sent])
    return Fill(sent, exhausted)


# --- the pass ------------------------------------------------------------------------------

_lock = threading.Lock()
# When this process's dispatcher thread last made a full pass (time.monotonic()).
_thread_full_pass = 0.0


def _held_count(queue: str) -> int:
    cap = settings.QUEUE_MAX_DEPTH + 1  # admission needs no more than this
    table = connection.ops.quote_name(Job._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE queue = %s AND status = 'queued'"
            " AND published_at IS NULL LIMIT %s) t",
            [queue, cap],
        )
        return int(cursor.fetchone()[0])


def dispatch_pass(*, now: datetime | None = None, full: bool = True) -> int:
    """Fill the queues' windows; returns how many jobs were published.

    A full pass (once a second) sizes every window, fills every queue with room and recounts
    the held jobs. A quick pass fills only the queues marked waiting whose window has at least
    half free. A paused queue is left alone (its held jobs still count)."""
    now = now or timezone.now()
    paused_queues = pause_set().queues
    queues = job_queues()
    client = redis_client()
    with _lock:
        pipe = client.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(queue)
            pipe.get(window_key(queue))
            pipe.exists(waiting_key(queue))
        replies = pipe.execute()
        sent = 0
        for index, queue in enumerate(queues):
            length, window, waiting = replies[index * 3 : index * 3 + 3]
            if full or window is None:
                window = window_size(queue)
                client.set(window_key(queue), window, ex=WINDOW_TTL_SECONDS)
            room = int(window) - int(length)
            fill = Fill(0, False)
            # Half the window free before a quick fill: fewer, larger fills (a fill of 12 jobs
            # cost 0.27 ms a job against 0.10 ms at 256), and the half left still feeds the
            # workers until the next pass.
            quick_skip = not full and (not waiting or room < max(1, int(window) // 2))
            if queue not in paused_queues and room > 0 and not quick_skip:
                fill = queue_fill(queue, room=room, now=now)
                sent += fill.sent
                if fill.exhausted:
                    client.delete(waiting_key(queue))
                else:
                    client.set(waiting_key(queue), 1, ex=WAITING_TTL_SECONDS)
            if full:
                # Read just before the count: what submissions add meanwhile is kept.
                read = int(client.get(held_key(queue)) or 0)
                _script(_HELD_RECOUNT)(keys=[held_key(queue)], args=[_held_count(queue), read])
    return sent


def queues_fill(queues: Sequence[str], *, now: datetime | None = None) -> int:
    """Fill these queues' windows now (a resume lets their held jobs go); without a window
    (no dispatcher runs) up to DISPATCH_WINDOW_MAX each. Returns how many were published."""
    client = redis_client()
    sent = 0
    with _lock:
        for queue in queues:
            pipe = client.pipeline(transaction=False)
            pipe.llen(queue)
            pipe.get(window_key(queue))
            length, window = pipe.execute()
            room = int(window or settings.DISPATCH_WINDOW_MAX) - int(length)
            sent += queue_fill(queue, room=room, now=now).sent
    return sent


def dispatch_pass_if_due(*, now: datetime | None = None) -> int:
    """The reconciler's relay step: a full pass, unless the dispatcher thread made one in the
    last second (it runs in the same leader)."""
    if time.monotonic() - _thread_full_pass < 1.0:
        return 0
    return dispatch_pass(now=now, full=True)


def _mark_full_pass() -> None:
    global _thread_full_pass
    _thread_full_pass = time.monotonic()


class Dispatcher:
    """The leader's dispatching thread: a quick pass every DISPATCH_INTERVAL_SECONDS and a
    full one every second, while `leading()` says this process leads the control loop."""

    def __init__(self, leading: Callable[[], bool]) -> None:
        self.leading = leading
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        interval = settings.DISPATCH_INTERVAL_SECONDS
        last_error = ""
        try:
            while not self._stop.wait(interval):
                if not self.leading():
                    continue
                try:
                    connections_reopen_if_broken()
                    full = time.monotonic() - _thread_full_pass >= 1.0
                    dispatch_pass(full=full)
                    if full:
                        _mark_full_pass()
                    last_error = ""
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    if error != last_error:
                        logger.warning("dispatcher: pass failed (%s); retrying", error)
                    last_error = error
                    self._stop.wait(min(1.0, interval * 10))
        finally:
            connections.close_all()

"""Flow control shared by the API and the workers, kept in Redis so every web and worker
process sees the same figures: queue depth, drain rate, per-kind concurrency slots and
rate-limit buckets."""

from __future__ import annotations

import hashlib
import math
import re
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from redis.commands.core import Script

from apps.core.redis import key as redis_key
from apps.core.redis import redis_client

DRAIN_WINDOW_SECONDS = 60
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


def parse_rate(rate: str) -> tuple[float, float]:
    """'10/s', '300/m', '1000/h' -> (count, period in seconds)."""
    match = _RATE.match(rate)
    if not match:
        raise ValueError(f"rate {rate!r} is not of the form N/s, N/m or N/h")
    return float(match.group(1)), float(_PERIODS[match.group(2)])


# --- depth and drain ---------------------------------------------------------------------


def queue_depth(queue: str) -> int:
    """Messages waiting on a queue (kombu keeps a Redis list per queue, named after it)."""
    return int(redis_client().llen(queue))


# A client's in-flight count, read from PostgreSQL at most once per this many seconds and
# raised by its own submissions meanwhile. Finishing jobs lower it only at the next read: a
# client near its quota may be refused for up to a second longer than an exact count would.
# Within the second every reservation is atomic. At a refresh, a submission reserved just
# before it but not yet committed (a few milliseconds) is missing from the fresh count, so
# the quota may be passed by the submissions in flight at that instant, never by a burst.
IN_FLIGHT_CACHE_SECONDS = 1

# Admission in one atomic step: the queue's depth, the client's cached in-flight count and,
# when both leave room for ARGV[1] more, the reservation (INCRBY) of that room. Concurrent
# submissions therefore queue up on the count and each sees the others' reservations; a
# read-then-SET would let them overwrite each other's increments and all pass.
# ARGV[4], when not empty, seeds a missing count (just read from PostgreSQL) with SET NX, so
# that of several submissions that all found it missing, the first seed stands and the
# others reserve on top of it instead of replacing it.
# The depth is the queue's whole backlog: its messages in Redis plus, while a dispatcher keeps
# the queue's window (KEYS[4] exists, apps.jobs.dispatch), the jobs held in PostgreSQL for it
# (KEYS[3]), which a reservation raises too.
# Returns {depth, in_flight before this submission or -1 when unknown, 1 if reserved}.
_ADMISSION = """
local depth = redis.call('LLEN', KEYS[1])
local windowed = redis.call('EXISTS', KEYS[4]) == 1
if windowed then
    depth = depth + (tonumber(redis.call('GET', KEYS[3])) or 0)
end
local count = tonumber(ARGV[1])
if ARGV[4] ~= '' then
    redis.call('SET', KEYS[2], ARGV[4], 'EX', tonumber(ARGV[5]), 'NX')
end
local in_flight = redis.call('GET', KEYS[2])
if not in_flight then
    return {depth, -1, 0}
end
in_flight = tonumber(in_flight)
if depth + count <= tonumber(ARGV[2]) and in_flight + count <= tonumber(ARGV[3]) then
    redis.call('INCRBY', KEYS[2], count)
    if windowed then
        redis.call('INCRBY', KEYS[3], count)
    end
    return {depth, in_flight, 1}
end
return {depth, in_flight, 0}
"""
_admission_script: Script | None = None


@dataclass(frozen=True)
class AdmissionFigures:
    depth: int
    in_flight: int | None  # None: not known this second; count it in PostgreSQL and seed it
    reserved: bool = False  # room for the submission was taken on the cached count


def in_flight_key(owner_id: object) -> str:
    return redis_key(f"in-flight:{owner_id}")


def held_key(queue: str) -> str:
    """How many of the queue's jobs wait in PostgreSQL for their turn (apps.jobs.dispatch)."""
    return redis_key(f"dispatch:held:{queue}")


def window_key(queue: str) -> str:
    """The queue's window: how many messages the dispatcher lets wait in Redis at once."""
    return redis_key(f"dispatch:window:{queue}")


def admission_reserve(
    *,
    queue: str,
    owner_id: object,
    count: int,
    depth_limit: int,
    in_flight_limit: int,
    seed: int | None = None,
) -> AdmissionFigures:
    """The queue's depth and the client's cached in-flight count in one round trip, and when
    both leave room for `count` more, the cached count raised by `count` in the same atomic
    step, so concurrent submissions never admit more than the room there is. `seed` is the
    count just read from PostgreSQL when the cache had none; it is set only if no other
    submission seeded it meanwhile."""
    global _admission_script
    client = redis_client()
    if _admission_script is None:
        _admission_script = client.register_script(_ADMISSION)
    depth, in_flight, reserved = _admission_script(
        keys=[queue, in_flight_key(owner_id), held_key(queue), window_key(queue)],
        args=[count, depth_limit, in_flight_limit, "" if seed is None else seed, IN_FLIGHT_CACHE_SECONDS],
        client=client,
    )
    return AdmissionFigures(
        depth=int(depth), in_flight=None if int(in_flight) < 0 else int(in_flight), reserved=bool(reserved)
    )


def drain_key(queue: str, now: float | None = None) -> str:
    return redis_key(f"drain:{queue}:{int(now if now is not None else time.time())}")


def record_drain(queue: str, now: float | None = None) -> None:
    """Count one job taken from `queue` in this second's bucket (workers call it on claim)."""
    key = drain_key(queue, now)
    pipe = redis_client().pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, DRAIN_WINDOW_SECONDS * 2)
    pipe.execute()


def drain_rate(queue: str, now: float | None = None, *, seconds: int = DRAIN_WINDOW_SECONDS) -> float:
    """Jobs per second taken from `queue` over the last minute (or the last `seconds`)."""
    second = int(now if now is not None else time.time())
    keys = [redis_key(f"drain:{queue}:{s}") for s in range(second - seconds, second)]
    counts = redis_client().mget(keys)
    return sum(int(c) for c in counts if c) / seconds


def retry_after_seconds(*, excess: int, rate: float) -> int:
    """How long until `excess` jobs have drained at `rate` per second, within [1, MAX]."""
    ceiling = settings.RETRY_AFTER_MAX_SECONDS
    if rate <= 0:
        return ceiling  # nothing drains right now (workers down or stuck): come back late
    return max(1, min(ceiling, math.ceil(excess / rate)))


# --- per-kind concurrency and rate limits (checked by the worker before it claims) --------

# A kind's limits may be keyed (Kind.limit_per): counted per owner ("owner") or per value of
# a top-level payload field ("payload.tenant"), each key in Redis keys of its own
# (`concurrency:{kind}:{key}`, `rate:{kind}:{key}`), so one key's jobs never use up another's
# room. A kind without `limit_per` keeps one count per kind (`concurrency:{kind}`).
LIMIT_PER_OWNER = "owner"
LIMIT_PER_PAYLOAD = "payload."
# A key short and plain (an owner's id, a tenant's slug) is used as written, so an operator
# can read it in Redis; any other value is hashed, so every string makes a bounded key with no
# separator in it. "#" is outside the plain set: a hash never equals a plain value.
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def limit_payload_field(per: str) -> str | None:
    """The payload field a kind's `limit_per` names ("payload.tenant" -> "tenant"), or None
    for "owner"; ValueError for anything else."""
    if per == LIMIT_PER_OWNER:
        return None
    field = per.removeprefix(LIMIT_PER_PAYLOAD)
    if field != per and field and "." not in field:
        return field
    raise ValueError(f"limit_per must be {LIMIT_PER_OWNER!r} or 'payload.<top-level field>', not {per!r}")


def limit_key(value: object) -> str:
    """A job's limit key from its owner's id or its payload field's value (PostgreSQL's text of
    it). A missing or null field is the empty key, which all such jobs of the kind share; any
    present value, "" included, is a key of its own."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if _PLAIN_KEY.match(text):
        return text
    return "#" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _limit_redis_key(limit: str, kind: str, key: str | None) -> str:
    return redis_key(f"{limit}:{kind}" if key is None else f"{limit}:{kind}:{key}")


@dataclass(frozen=True)
class Slot:
    """A concurrency slot held: its sorted set's Redis key (the kind's, or the kind's for one
    limit key) and its token there. Renewed and released under the same key."""

    key: str
    token: str


@dataclass(frozen=True)
class Gate:
    allowed: bool
    slot: Slot | None = None
    retry_in: float = 0.0


def concurrency_acquire(kind: str, limit: int, *, lease_seconds: float, key: str | None = None) -> Gate:
    """Take one of `limit` slots for a kind (for one limit key of it, with `key`), held in a
    sorted set scored by expiry, so a slot whose worker died frees itself when its lease would
    have expired."""
    slot = Slot(_limit_redis_key("concurrency", kind, key), uuid.uuid4().hex)
    now = time.time()
    script = redis_client().register_script(_ACQUIRE)
    if script(keys=[slot.key], args=[now, now + lease_seconds, limit, slot.token]):
        return Gate(True, slot)
    return Gate(False, retry_in=min(5.0, lease_seconds / 3))


def concurrency_renew(slot: Slot, *, lease_seconds: float) -> None:
    redis_client().zadd(slot.key, {slot.token: time.time() + lease_seconds}, xx=True)


def concurrency_release(slot: Slot) -> None:
    redis_client().zrem(slot.key, slot.token)


def rate_acquire(kind: str, rate: str, *, key: str | None = None) -> Gate:
    """A token bucket per kind (per limit key of it, with `key`): `rate` starts per period, in
    bursts of at most one period's."""
    count, period = parse_rate(rate)
    script = redis_client().register_script(_BUCKET)
    wait = float(script(keys=[_limit_redis_key("rate", kind, key)], args=[time.time(), count, period]))
    return Gate(True) if wait <= 0 else Gate(False, retry_in=wait)


# Expire dead slots, then take one if fewer than the limit are held.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
  redis.call('EXPIRE', KEYS[1], 3600)
  return 1
end
return 0
"""

# Refill tokens for the time passed, take one if there is one; else say how long to wait.
_BUCKET = """
local now, capacity, period = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + (now - at) * capacity / period)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) * period / capacity end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(period) * 2 + 60)
return tostring(wait)
"""

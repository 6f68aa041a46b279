"""Behaviour on jobs. Views, admin actions, tasks and commands call these; none holds
business logic of its own."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import redis
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import JSONField
from django.utils import timezone

from apps.core.db import prepared_cursor
from apps.core.errors import ApplicationError, Conflict, InvalidInput, TooManyRequests, Unavailable, Unprocessable
from apps.core.text import clean_json, clean_text
from apps.core.urlsafety import UnsafeURL, check_outbound_url
from apps.deadletters.models import DeadLetter
from apps.jobs import flow, signals
from apps.jobs.models import ACTIVE_STATUSES, TERMINAL_STATUSES, IdempotencyKey, Job, JobAttempt, JobStatus, JobStep
from apps.jobs.publish import dead_letter_publish_on_commit, job_publish_on_commit
from apps.jobs.registry import CLIENT_ERROR_TYPE, PRIORITIES, Kind, UnknownKind, registry

logger = logging.getLogger(__name__)

T = TypeVar("T")


# --- submission --------------------------------------------------------------------------


def _kind_or_error(name: str) -> Kind:
    try:
        return registry.get(name)
    except UnknownKind:
        raise _unknown_kind(name) from None


def _unknown_kind(name: str) -> InvalidInput:
    known = [k.name for k in registry.public()]
    return InvalidInput(
        f"Unknown kind {name!r}. Known kinds: {', '.join(known)}.",
        code="unknown_kind",
        details={"known_kinds": known},
    )


def job_refuse_internal_kind(kind: str) -> None:
    """A client's submission of an internal kind (the platform's own, such as webhook
    delivery) is answered exactly as one of an unknown kind: 400 unknown_kind, listing the
    kinds a client may submit. Checked before the payload, whose errors would name it."""
    if kind in registry and registry.get(kind).internal:
        raise _unknown_kind(kind)


def job_validate_outbound_urls(*, k: Kind, payload: dict[str, Any]) -> None:
    """Every URL a client gives is checked when it is given: the payload's URLs that the
    kind's handler will call (Kind.outbound_urls) pass the check a callback_url passes."""
    for key in k.outbound_urls:
        url = payload.get(key)
        if not isinstance(url, str):
            continue  # absent or not a string: the kind's schema decides
        try:
            check_outbound_url(url)
        except UnsafeURL as exc:
            raise InvalidInput(
                f"payload {key} is refused: {exc}.",
                code="unsafe_url",
                details=[{"path": key, "message": str(exc)}],
            ) from None


def _unstorable(text: str) -> str | None:
    """Why PostgreSQL's jsonb cannot store `text`, or None when it can: a NUL character, or a
    lone surrogate (JSON's "\\ud800" parses to one; it has no UTF-8 form, and jsonb refuses
    it with "invalid input syntax for type json", a 500 if nothing catches it first). A
    parsed surrogate pair is already one character, so any surrogate left is a lone one."""
    if "\x00" in text:
        return "must not contain NUL (\\u0000) characters"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "must not contain lone surrogates (\\ud800-\\udfff not in a pair)"
    return None


def _find_unstorable(value: Any, path: str = "(root)") -> tuple[str, str] | None:
    """The path of the first string (key or value) jsonb cannot store, and why, if any."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            reason = _unstorable(item)
            if reason is not None:
                return where, reason
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = key if where == "(root)" else f"{where}/{key}"
                reason = _unstorable(key)
                if reason is not None:
                    return child_path, reason
                stack.append((child, child_path))
        elif isinstance(item, list):
            stack.extend((child, f"{where}/{i}") for i, child in enumerate(item))
    return None


class PriorityNotAllowed(ApplicationError):
    status_code = 403
    code = "priority_not_allowed"


def _may_ask_for_high(owner: AbstractBaseUser) -> bool:
    """HIGH_PRIORITY_CLIENTS: staff, the usernames listed, or everyone with `*`. Read from the
    loaded user, so it costs the submit path no query."""
    allowed = settings.HIGH_PRIORITY_CLIENTS
    return getattr(owner, "is_staff", False) or "*" in allowed or owner.get_username() in allowed


def job_check_priority_allowed(*, owner: AbstractBaseUser, k: Kind, priority: str) -> None:
    """A client's `high` jumps every other client's work: who may ask for it is a setting
    (403 priority_not_allowed). Spelling out a kind's own default asks for nothing more."""
    if priority == "high" and k.priority != "high" and not _may_ask_for_high(owner):
        raise PriorityNotAllowed(
            "You may not submit at high priority (HIGH_PRIORITY_CLIENTS); use default or low.",
            details={"priority": priority, "allowed": ["default", "low"]},
        )


def job_validate(
    *,
    kind: str,
    payload: Any,
    priority: str | None = None,
    max_attempts: int | None = None,
    owner: AbstractBaseUser | None = None,
) -> tuple[Kind, str, int]:
    """Check a submission against its kind; returns (kind, priority, max_attempts). With the
    owner, also what only the owner can answer: the kind's own payload check (references to
    the owner's rows, such as an upload)."""
    k = _kind_or_error(kind)
    if not isinstance(payload, dict):
        raise InvalidInput(
            "The payload must be a JSON object.",
            code="invalid_payload",
            details=[{"path": "(root)", "message": "must be an object"}],
        )
    unstorable = _find_unstorable(payload)
    if unstorable is not None:
        # PostgreSQL's jsonb cannot store U+0000 or a lone surrogate; refuse either here, as
        # bad input, rather than fail at INSERT. The path is cleaned: the error is JSON too.
        where, reason = clean_text(unstorable[0]), unstorable[1]
        raise InvalidInput(
            f"The payload has a string that cannot be stored at {where}: it {reason}.",
            code="invalid_payload",
            details=[{"path": where, "message": reason}],
        )
    errors = k.payload_errors(payload)
    if errors:
        first = errors[0]
        raise InvalidInput(
            f"The payload does not fit kind {kind!r}: {first['path']}: {first['message']}",
            code="invalid_payload",
            details=errors,
        )
    if k.check_payload is not None and owner is not None:
        # After the schema, so the hook sees a well-formed payload; most kinds have none.
        k.check_payload(owner, payload)
    priority = priority or k.priority
    if priority not in PRIORITIES:
        raise InvalidInput(f"priority must be one of {', '.join(PRIORITIES)}.", code="invalid_priority")
    if max_attempts is None:
        max_attempts = k.max_attempts
    elif not 1 <= max_attempts <= k.max_attempts:
        raise InvalidInput(
            f"max_attempts for {kind!r} must be between 1 and {k.max_attempts}.", code="invalid_max_attempts"
        )
    return k, priority, max_attempts


def job_validate_callback_url(url: str | None) -> str:
    """A callback URL must be one the platform may call (http(s), not an internal address)."""
    if not url:
        return ""
    try:
        check_outbound_url(url)
    except UnsafeURL as exc:
        raise InvalidInput(f"callback_url is refused: {exc}.", code="unsafe_callback_url") from None
    return url


def job_admission_check(*, owner: AbstractBaseUser, queue: str, count: int = 1) -> None:
    """Refuse work the platform cannot absorb, with 429 and a Retry-After computed from the
    queue's measured drain rate: past QUEUE_MAX_DEPTH waiting on the queue, or past the
    client's CLIENT_MAX_IN_FLIGHT. With Redis unreachable the depth is read from PostgreSQL
    instead, and an accepted job waits there for the relay. The client's in-flight count is
    counted in PostgreSQL at most once a second and reserved on atomically in Redis
    (flow.admission_reserve): concurrent submissions cannot together pass the quota."""
    limit = settings.QUEUE_MAX_DEPTH
    in_flight_limit = settings.CLIENT_MAX_IN_FLIGHT
    broker_up = True
    in_flight: int | None = None
    reserved = False

    def count_in_flight() -> int:
        return (
            Job.objects.filter(owner=owner, status__in=ACTIVE_STATUSES).values("id")[: in_flight_limit + count].count()
        )

    try:
        figures = flow.admission_reserve(
            queue=queue, owner_id=owner.pk, count=count, depth_limit=limit, in_flight_limit=in_flight_limit
        )
        if figures.in_flight is None and figures.depth + count <= limit:
            # Not cached this second: count in PostgreSQL, seed the cache (unless a concurrent
            # submission seeded it first) and reserve on it, in one more atomic step.
            figures = flow.admission_reserve(
                queue=queue,
                owner_id=owner.pk,
                count=count,
                depth_limit=limit,
                in_flight_limit=in_flight_limit,
                seed=count_in_flight(),
            )
        depth, in_flight, reserved = figures.depth, figures.in_flight, figures.reserved
    except redis.RedisError as broker_error:
        broker_up = False
        # The broker is away: count the backlog in PostgreSQL. Under the limit the job is
        # accepted and waits for the relay; over it, say the service is unavailable.
        depth = Job.objects.filter(queue=queue, status=JobStatus.QUEUED)[: limit + count].count()
        if depth + count > limit:
            wait = settings.RETRY_AFTER_MAX_SECONDS
            raise Unavailable(
                f"The broker is unreachable and the {queue} queue's backlog is at its limit; retry in {wait} s.",
                code="broker_unavailable",
                headers={"Retry-After": str(wait)},
                details={"queue": queue, "depth": depth, "limit": limit},
            ) from broker_error

    def drain_rate() -> float:
        # Read only when refusing: the common, admitted submission skips this round trip.
        if not broker_up:
            return 0.0
        try:
            return flow.drain_rate(queue)
        except redis.RedisError:
            return 0.0

    if depth + count > limit:
        rate = drain_rate()
        wait = flow.retry_after_seconds(excess=depth + count - limit, rate=rate)
        raise TooManyRequests(
            f"The {queue} queue is full ({depth} waiting, limit {limit}); retry in {wait} s.",
            code="queue_full",
            headers={"Retry-After": str(wait)},
            details={"queue": queue, "depth": depth, "limit": limit, "drain_per_second": round(rate, 2)},
        )
    if in_flight is None:
        # Only with the broker away: the count alone decides (nothing to reserve on).
        in_flight = count_in_flight()
        reserved = in_flight + count <= in_flight_limit
    if not reserved:
        wait = flow.retry_after_seconds(excess=max(1, in_flight + count - in_flight_limit), rate=drain_rate())
        raise TooManyRequests(
            f"You have {in_flight} jobs in flight (limit {in_flight_limit}); retry in {wait} s.",
            code="too_many_in_flight",
            headers={"Retry-After": str(wait)},
            details={"in_flight": in_flight, "limit": in_flight_limit},
        )


def job_submit(
    *,
    owner: AbstractBaseUser,
    kind: str,
    payload: Any,
    priority: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    request_id: str = "",
    callback_url: str = "",
    from_client: bool = False,
) -> Job:
    """Commit a job and publish it after the commit. A `run_at` in the future holds it in the
    database until the reconciler publishes it when due. `from_client` (the API sets it)
    refuses internal kinds and checks the payload's outbound URLs."""
    if from_client:
        job_refuse_internal_kind(kind)
    k, priority, max_attempts = job_validate(
        kind=kind, payload=payload, priority=priority, max_attempts=max_attempts, owner=owner
    )
    if from_client:
        job_validate_outbound_urls(k=k, payload=payload)
        job_check_priority_allowed(owner=owner, k=k, priority=priority)
    callback_url = job_validate_callback_url(callback_url)
    job_admission_check(owner=owner, queue=k.queue_for(priority))
    # One INSERT, committed by itself: no BEGIN and COMMIT round trips around it. The
    # publish waits for the commit either way (it runs on commit, at once in autocommit).
    return _job_create(
        callback_url=callback_url,
        owner=owner,
        k=k,
        payload=payload,
        priority=priority,
        run_at=run_at,
        max_attempts=max_attempts,
        request_id=request_id,
    )


def _job_create(
    *,
    owner: AbstractBaseUser,
    k: Kind,
    payload: dict[str, Any],
    priority: str,
    run_at: datetime | None,
    max_attempts: int,
    request_id: str,
    callback_url: str = "",
) -> Job:
    now = timezone.now()
    scheduled = run_at is not None and run_at > now
    job = _new_job(
        owner,
        kind=k.name,
        payload=payload,
        priority=priority,
        queue=k.queue_for(priority),
        max_attempts=max_attempts,
        attempt_allowance=max_attempts,
        created_at=now,
        run_at=run_at if scheduled else None,
        request_id=request_id[:64],
        callback_url=callback_url,
    )
    _jobs_insert([job])
    if not scheduled:
        job_publish_on_commit([(str(job.id), job.kind, job.queue, job.request_id)])
    transaction.on_commit(lambda: signals.jobs_submitted.send(sender=Job, jobs=[job]))
    return job


def job_submit_batch(
    *, owner: AbstractBaseUser, jobs: list[dict[str, Any]], request_id: str = "", from_client: bool = False
) -> list[Job]:
    """Submit many jobs, all or nothing. Every job is checked first and a 400 names each bad
    one by its index; the whole batch is admission-checked per queue (depth and the client's
    in-flight count, each with that queue's share of the batch), written with one statement
    in one transaction, and published together after the commit. Each item has the keys of
    a single submission (kind, payload, priority, run_at, max_attempts, callback_url), and
    `from_client` means what it means for job_submit."""
    checked: list[tuple[Kind, str, int, str, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    for index, spec in enumerate(jobs):
        try:
            if from_client:
                job_refuse_internal_kind(spec["kind"])
            k, priority, max_attempts = job_validate(
                kind=spec["kind"],
                payload=spec.get("payload", {}),
                priority=spec.get("priority"),
                max_attempts=spec.get("max_attempts"),
                owner=owner,
            )
            if from_client:
                job_validate_outbound_urls(k=k, payload=spec.get("payload", {}))
                job_check_priority_allowed(owner=owner, k=k, priority=priority)
            callback_url = job_validate_callback_url(spec.get("callback_url"))
        except PriorityNotAllowed as exc:
            # Refused rather than malformed: the whole batch answers 403, naming the job.
            raise PriorityNotAllowed(f"Job {index}: {exc.message}", details={"index": index, **exc.details}) from None
        except InvalidInput as exc:
            error = {"index": index, "code": exc.code, "message": exc.message}
            if exc.details is not None:
                error["details"] = exc.details
            errors.append(error)
            continue
        checked.append((k, priority, max_attempts, callback_url, spec))
    if errors:
        first = errors[0]
        raise InvalidInput(
            f"{len(errors)} of {len(jobs)} jobs are not valid, so none was submitted. "
            f"Job {first['index']}: {first['message']}",
            code="invalid_batch",
            details=errors,
        )
    per_queue: dict[str, int] = {}
    for k, priority, *_ in checked:
        queue = k.queue_for(priority)
        per_queue[queue] = per_queue.get(queue, 0) + 1
    for queue, count in per_queue.items():
        job_admission_check(owner=owner, queue=queue, count=count)

    now = timezone.now()
    rows = []
    for position, (k, priority, max_attempts, callback_url, spec) in enumerate(checked):
        run_at = spec.get("run_at")
        rows.append(
            _new_job(
                owner,
                kind=k.name,
                payload=spec.get("payload", {}),
                priority=priority,
                queue=k.queue_for(priority),
                max_attempts=max_attempts,
                attempt_allowance=max_attempts,
                # A microsecond apart, so the list (newest first) keeps the batch's order.
                created_at=now + timedelta(microseconds=position),
                run_at=run_at if run_at is not None and run_at > now else None,
                request_id=request_id[:64],
                callback_url=callback_url,
            )
        )
    with transaction.atomic():
        _jobs_insert(rows)
        due = [job for job in rows if job.run_at is None]
        job_publish_on_commit((str(job.id), job.kind, job.queue, job.request_id) for job in due)
        transaction.on_commit(lambda: signals.jobs_submitted.send(sender=Job, jobs=rows))
    return rows


def _new_job(owner: AbstractBaseUser, **values: Any) -> Job:
    """Job(owner=owner, **values), built positionally. Model.__init__ with keyword arguments
    resolves every keyword and every field's default one by one, about 25 us per job: a
    quarter of a 1,000-job batch. Defaults are what Job(...) would give (a fresh one from a
    callable default, such as the id, for every job)."""
    defaults = _job_defaults()
    if not values.keys() <= defaults.keys():
        raise TypeError(f"Job has no field(s) {sorted(values.keys() - defaults.keys())}")
    args = [
        values[name] if name in values else (default() if is_callable else default)
        for name, (default, is_callable) in defaults.items()
    ]
    job = Job(*args)
    job.owner = owner  # the id and the cached object, as Job(owner=owner) sets them
    return job


@functools.cache
def _job_defaults() -> dict[str, tuple[Any, bool]]:
    """attname -> (default, whether to call it), per concrete field in Job(*args) order."""
    return {
        f.attname: (f.default, True) if f.has_default() and callable(f.default) else (f.get_default(), False)
        for f in Job._meta.concrete_fields
    }


def _jobs_insert(jobs: list[Job]) -> None:
    """Insert new jobs with one statement, skipping the ORM's compile on PostgreSQL.

    One job is an INSERT prepared on the connection (its text never changes), about a
    millisecond of Python less than Model.save() on every submit. Many jobs are a COPY:
    bulk_create spends about 0.1 ms of Python per row compiling its INSERT (most of a
    1,000-job batch's time), COPY a tenth of that. Other databases get bulk_create."""
    if connection.vendor != "postgresql":
        Job.objects.bulk_create(jobs)
        return
    insert, copy_sql = _job_insert_sql()
    now = timezone.now()
    if len(jobs) == 1:
        with prepared_cursor() as cursor:
            cursor.execute(insert, _job_row(jobs[0], now))
    else:
        with connection.cursor() as cursor:
            # Counted and logged like any other query (DEBUG's query log, django_assert_num_queries).
            logged = cursor.debug_sql(copy_sql) if hasattr(cursor, "debug_sql") else contextlib.nullcontext()
            with logged, cursor.cursor.copy(copy_sql) as copy:
                for job in jobs:
                    copy.write_row(_job_row(job, now))
    for job in jobs:
        job._state.adding = False
        job._state.db = connection.alias


@functools.cache
def _job_insert_sql() -> tuple[str, str]:
    """(INSERT of one job, COPY of many) over every concrete column, in _job_row's order."""
    q = connection.ops.quote_name
    fields = Job._meta.concrete_fields
    table, columns = q(Job._meta.db_table), ", ".join(q(f.column) for f in fields)
    insert = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"
    return insert, f"COPY {table} ({columns}) FROM STDIN"


@functools.cache
def _json_columns() -> frozenset[int]:
    return frozenset(i for i, f in enumerate(Job._meta.concrete_fields) if isinstance(f, JSONField))


def _job_row(job: Job, now: datetime) -> list[Any]:
    """A new job's column values as psycopg takes them: what the ORM would write, with JSON
    columns wrapped as jsonb and auto_now's updated_at set, as save() and bulk_create do."""
    from psycopg.types.json import Jsonb

    job.updated_at = now
    values = [getattr(job, f.attname) for f in Job._meta.concrete_fields]
    for i in _json_columns():
        if values[i] is not None:
            values[i] = Jsonb(values[i])
    return values


IDEMPOTENCY_KEY_MAX_LENGTH = 255
IDEMPOTENCY_TTL = timedelta(hours=24)


@dataclass(frozen=True)
class Submission:
    job: Job
    status_code: int
    replayed: bool


def request_fingerprint(**request: Any) -> str:
    """A stable digest of what was asked, to tell a retry of a request from a different one."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _with_defaults(*, kind: str, priority: str | None, max_attempts: int | None) -> dict[str, Any]:
    """priority and max_attempts as the job would run with them, the kind's defaults filled
    in, so a retry that spells out a default ("priority": "default") fingerprints as the
    same request as one that left it out. An unknown kind keeps them as given (validation
    refuses it anyway)."""
    try:
        k = registry.get(kind)
    except UnknownKind:
        return {"priority": priority, "max_attempts": max_attempts}
    return {
        "priority": priority or k.priority,
        "max_attempts": k.max_attempts if max_attempts is None else max_attempts,
    }


def job_submit_idempotent(
    *,
    owner: AbstractBaseUser,
    idempotency_key: str,
    kind: str,
    payload: Any,
    priority: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
    request_id: str = "",
    callback_url: str = "",
    from_client: bool = False,
) -> Submission:
    """Submit once per (client, Idempotency-Key) for 24 hours. The same key and request
    returns the original job; the same key with a different request is refused with 422.
    Concurrent requests with one key race on a unique constraint: one inserts, the others
    wait for its commit, fail the insert and read the winner's job."""
    if not idempotency_key or len(idempotency_key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise InvalidInput(
            f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} characters.", code="invalid_idempotency_key"
        )
    fingerprint = request_fingerprint(
        kind=kind,
        payload=payload,
        **_with_defaults(kind=kind, priority=priority, max_attempts=max_attempts),
        run_at=run_at,
        callback_url=callback_url or "",
    )
    # Keys stored before defaults were applied hold the arguments as given; accepted for
    # their 24 hours, so a retry across the deploy still replays.
    as_given = request_fingerprint(
        kind=kind,
        payload=payload,
        priority=priority,
        run_at=run_at,
        max_attempts=max_attempts,
        callback_url=callback_url,
    )
    for _ in range(3):
        existing = _idempotent_replay(owner=owner, key=idempotency_key, fingerprints=(fingerprint, as_given))
        if existing is not None:
            return existing
        if from_client:
            job_refuse_internal_kind(kind)
        k, prio, attempts = job_validate(
            kind=kind, payload=payload, priority=priority, max_attempts=max_attempts, owner=owner
        )
        if from_client:
            job_validate_outbound_urls(k=k, payload=payload)
            job_check_priority_allowed(owner=owner, k=k, priority=prio)
        safe_callback = job_validate_callback_url(callback_url)
        job_admission_check(owner=owner, queue=k.queue_for(prio))
        try:
            with transaction.atomic():
                job = _job_create(
                    owner=owner,
                    k=k,
                    payload=payload,
                    priority=prio,
                    run_at=run_at,
                    max_attempts=attempts,
                    request_id=request_id,
                    callback_url=safe_callback,
                )
                IdempotencyKey.objects.create(
                    owner=owner,
                    key=idempotency_key,
                    fingerprint=fingerprint,
                    job=job,
                    status_code=202,
                    created_at=job.created_at,
                )
            return Submission(job=job, status_code=202, replayed=False)
        except IntegrityError as exc:
            if not _violates(exc, "idempotency_owner_key"):
                raise
            continue  # another request won the race; read its job on the next turn
    raise Conflict(
        "The Idempotency-Key is being used by a concurrent request; retry shortly.",
        code="idempotency_key_busy",
        headers={"Retry-After": "1"},
    )


def _violates(exc: IntegrityError, constraint: str) -> bool:
    """Whether an IntegrityError comes from the named constraint (PostgreSQL says which;
    other databases are given the benefit of the doubt)."""
    diag = getattr(exc.__cause__, "diag", None)
    name = getattr(diag, "constraint_name", None)
    return name is None or name == constraint


def idempotency_keys_prune(*, now: datetime | None = None, batch: int = 5000) -> int:
    """Delete keys past their 24 hours, a batch at a time (index idempotency_created)."""
    cutoff = (now or timezone.now()) - IDEMPOTENCY_TTL
    ids = list(IdempotencyKey.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[:batch])
    if not ids:
        return 0
    return IdempotencyKey.objects.filter(pk__in=ids).delete()[0]


def _idempotent_replay(*, owner: AbstractBaseUser, key: str, fingerprints: tuple[str, ...]) -> Submission | None:
    record = IdempotencyKey.objects.select_related("job").filter(owner=owner, key=key).first()
    if record is None:
        return None
    if record.created_at < timezone.now() - IDEMPOTENCY_TTL:
        # Expired: the key may be used afresh. Delete only the row we read, so two requests
        # expiring it at once cannot delete a newer one.
        IdempotencyKey.objects.filter(pk=record.pk, created_at=record.created_at).delete()
        return None
    if record.fingerprint not in fingerprints:
        raise Unprocessable(
            "This Idempotency-Key was already used for a different request.",
            code="idempotency_key_reused",
            details={"job_id": str(record.job_id)},
        )
    return Submission(job=record.job, status_code=record.status_code, replayed=True)


# Said in full per status: "The job is already succeeded." read wrong.
_ALREADY_FINISHED = {
    JobStatus.SUCCEEDED: "The job has already succeeded.",
    JobStatus.FAILED: "The job has already failed.",
    JobStatus.CANCELLED: "The job has already been cancelled.",
}


def job_cancel(*, job: Job) -> Job:
    """Cancel a job: a waiting one never starts; a running one is asked to stop, and its
    handler sees it at its next cancellation check."""
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status in TERMINAL_STATUSES:
            raise Conflict(_ALREADY_FINISHED[job.status], code="job_terminal")
        if job.status == JobStatus.RUNNING:
            if job.cancel_requested_at is None:
                job.cancel_requested_at = now
                job.save(update_fields=["cancel_requested_at", "updated_at"])
        else:
            job.status = JobStatus.CANCELLED
            job.cancel_requested_at = now
            job.finished_at = now
            job.save(update_fields=["status", "cancel_requested_at", "finished_at", "updated_at"])
            _announce_finished(job_id=str(job.id), kind=job.kind, status=job.status, callback_url=job.callback_url)
    return job


def _announce_finished(
    *, job_id: str, kind: str, status: str, callback_url: str = "", duration_ms: int | None = None
) -> None:
    """Tell followers (metrics, webhooks) once the surrounding transaction commits."""
    transaction.on_commit(
        lambda: signals.job_finished.send(
            sender=Job, job_id=job_id, kind=kind, status=status, callback_url=callback_url, duration_ms=duration_ms
        )
    )


def job_requeue_fresh(*, job: Job) -> None:
    """Queue a failed or cancelled job again with a fresh allowance of attempts, keeping its
    history (3 of 3 attempts becomes 3 of 6). Caller holds the row lock; publishes on commit."""
    job.status = JobStatus.QUEUED
    job.max_attempts = job.attempts + job.attempt_allowance
    job.error_type = job.error_message = job.error_traceback = ""
    job.result = None
    job.finished_at = job.run_at = job.published_at = job.cancel_requested_at = None
    job.progress_percent = None
    job.progress_message = ""
    job.save()
    job_publish_on_commit([(str(job.id), job.kind, job.queue, job.request_id)])


# --- the worker's side: claim, heartbeat, progress, finish -------------------------------


@dataclass(frozen=True)
class Claim:
    """What a worker holds while it runs one attempt of a job."""

    job_id: str
    kind: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    queue: str
    lease_token: str
    callback_url: str
    created_at: datetime
    started_at: datetime
    request_id: str
    worker: str = ""


@functools.cache
def _job_fields() -> dict[str, Any]:
    """Job's concrete fields by column name, built once (the claim runs for every job)."""
    return {f.attname: f for f in Job._meta.concrete_fields}


_CLAIM_COLUMNS = (
    "kind",
    "payload",
    "attempts",
    "max_attempts",
    "queue",
    "request_id",
    "callback_url",
    "created_at",
    "lease_token",
)


# The lease token of an attempt is derived, not random: md5("<seed>:<attempt number>") read
# as a UUID, where the seed names the delivery that runs the attempt (lease_seed). The
# worker's main process, which never sees what its pool child claimed, can then tell whether
# the job's current lease is the one of the child it just killed at its hard time limit
# (job_attempt_timed_out). The token stays unique per claim, as the fence needs: the attempt
# number is new at every claim of a job, so even the same message claiming twice (Redis
# restoring an unacknowledged copy after the first claim's lease expired) makes two tokens.
# The token guards against confusion, not attackers: only workers write with it.
def lease_seed(*, task_id: str | None, worker: str, pid: int | None) -> str:
    """What names one delivery of a job's message to one process: the Celery task id (fresh
    at every publish, shared only by copies of one message), the worker's name and the pool
    process's pid (a copy redelivered while the first still runs is in another process, since
    a prefork child runs one task at a time). Both sides of the fence build it here."""
    return f"{task_id}/{worker}/{pid}"


def lease_token_for(seed: str, attempt: int) -> uuid.UUID:
    """The token job_claim gives attempt `attempt` claimed with `seed` (the same arithmetic
    as the claim's SQL)."""
    return uuid.UUID(hashlib.md5(f"{seed}:{attempt}".encode(), usedforsecurity=False).hexdigest())


@functools.cache
def _lease_token_sql(vendor: str) -> str:
    """The claim's token in SQL: SET expressions read the row before the update, so the new
    attempt's number is attempts + 1. SQLite stores a UUID as 32 hex digits (what md5 gives;
    Django registers MD5 on its connections); PostgreSQL casts them to uuid."""
    digest = "MD5(CAST(%s AS TEXT) || ':' || CAST(attempts + 1 AS TEXT))"
    return f"CAST({digest} AS uuid)" if vendor == "postgresql" else digest


def job_claim(*, job_id: str, worker: str, seed: str | None = None) -> Claim | None:
    """Take a queued job with one conditional update, which also returns what the worker
    needs (UPDATE ... RETURNING: one statement, no transaction). None means there is nothing
    to claim: a duplicate or stale message, a cancelled job, or one that already finished.
    The attempt's row is written when the attempt ends (or its lease expires). `seed` (see
    lease_seed) makes the lease token derivable; without one it is random."""
    now = timezone.now()
    fields = _job_fields()

    def db(name: str, value: Any) -> Any:
        return fields[name].get_db_prep_value(value, connection)

    columns = ", ".join(connection.ops.quote_name(c) for c in _CLAIM_COLUMNS)
    sql = (
        f"UPDATE {connection.ops.quote_name(Job._meta.db_table)} SET status = %s, attempts = attempts + 1, "
        f"lease_token = {_lease_token_sql(connection.vendor)}, lease_expires_at = %s, started_at = %s, worker = %s, "
        "updated_at = %s "
        "WHERE id = %s AND status = %s AND (run_at IS NULL OR run_at <= %s) "
        f"RETURNING {columns}"
    )
    params = [
        JobStatus.RUNNING,
        seed if seed is not None else uuid.uuid4().hex,
        db("lease_expires_at", now + timedelta(seconds=settings.JOB_LEASE_SECONDS)),
        db("started_at", now),
        worker[:255],
        db("updated_at", now),
        db("id", uuid.UUID(str(job_id))),
        JobStatus.QUEUED,
        db("run_at", now),
    ]
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    values = {
        name: fields[name].from_db_value(value, None, connection) if hasattr(fields[name], "from_db_value") else value
        for name, value in zip(_CLAIM_COLUMNS, row, strict=True)
    }
    created_at = values["created_at"]
    if isinstance(created_at, str):  # SQLite hands back text
        created_at = fields["created_at"].to_python(created_at)
    if timezone.is_naive(created_at):
        created_at = timezone.make_aware(created_at, UTC)
    # robust: a follower's failure (Redis away) is logged and never undoes or breaks a claim.
    job_key, kind = str(job_id), values["kind"]
    transaction.on_commit(lambda: signals.job_started.send(sender=Job, job_id=job_key, kind=kind), robust=True)
    return Claim(
        job_id=job_key,
        kind=kind,
        payload=values["payload"],
        attempt=values["attempts"],
        max_attempts=values["max_attempts"],
        queue=values["queue"],
        # psycopg hands back a UUID, SQLite its 32 hex digits
        lease_token=str(uuid.UUID(str(values["lease_token"]))),
        callback_url=values["callback_url"],
        created_at=created_at,
        started_at=now,
        request_id=values["request_id"],
        worker=worker[:255],
    )


def job_defer(*, job_id: str, seconds: float) -> bool:
    """Put a queued job back to wait in PostgreSQL (its kind is at its concurrency or rate
    limit) without spending an attempt; the relay publishes it again when due."""
    now = timezone.now()
    return (
        Job.objects.filter(id=job_id, status=JobStatus.QUEUED).update(
            run_at=now + timedelta(seconds=seconds), published_at=None, updated_at=now
        )
        == 1
    )


def job_attempt_timed_out(*, job_id: str, seed: str, limit: float) -> str:
    """The worker killed a handler at its hard time limit: end that attempt as a failure
    now, instead of waiting for its lease to expire. Fenced by the killed attempt's lease
    token, rebuilt from its `seed` (lease_seed): when the job's lease is no longer that
    attempt's (it expired, and another process, maybe of the same worker, claimed the job
    again), nothing changes and this returns 'stale'. The worker's name would not do: every
    pool process of a worker shares it."""
    now = timezone.now()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(id=job_id, status=JobStatus.RUNNING).first()
        if job is None or job.lease_token != lease_token_for(seed, job.attempts):
            return "stale"
        message = f"the handler ran past its hard time limit of {limit:g} s and was killed"
        record_lost_attempt(
            job=job, now=now, outcome=JobAttempt.Outcome.FAILED, error_type="TimeLimitExceeded", error_message=message
        )
        return _after_failed_attempt(job, now, AttemptFailure("TimeLimitExceeded", message))


def _held(claim: Claim):
    """The job's row, only while this attempt still holds its lease (the fence)."""
    return Job.objects.filter(id=claim.job_id, status=JobStatus.RUNNING, lease_token=claim.lease_token)


def job_heartbeat(*, claim: Claim) -> bool:
    """Renew the lease; False when it was lost (expired and handed on, or cancelled)."""
    expires = timezone.now() + timedelta(seconds=settings.JOB_LEASE_SECONDS)
    return _held(claim).update(lease_expires_at=expires) == 1


def job_report_progress(*, claim: Claim, percent: float, message: str = "") -> bool:
    percent = max(0.0, min(100.0, float(percent)))
    message = clean_text(message, 500)
    return _held(claim).update(progress_percent=percent, progress_message=message, updated_at=timezone.now()) == 1


def job_cancel_requested(*, claim: Claim) -> bool:
    return Job.objects.filter(id=claim.job_id, cancel_requested_at__isnull=False).exists()


def job_step_once(*, claim: Claim, name: str, effect: Callable[[], T]) -> T:
    """Run `effect` at most once per job: once it has succeeded, its JSON result is recorded
    and every later attempt gets that result back without running it again."""
    name = clean_text(name, 200)  # the column's width; lookup and insert must use the same name
    recorded = JobStep.objects.filter(job_id=claim.job_id, name=name).values_list("result").first()
    if recorded is not None:
        return recorded[0]  # type: ignore[no-any-return]
    value = effect()
    JobStep.objects.get_or_create(
        job_id=claim.job_id, name=name, defaults={"result": clean_json(value), "attempt": claim.attempt}
    )
    return value


def _close_attempt(
    claim: Claim, now: datetime, outcome: str, error_type: str = "", error_message: str = "", traceback: str = ""
) -> None:
    """Write the attempt's row, now that it has ended (one INSERT; nothing at claim time)."""
    JobAttempt.objects.create(
        job_id=claim.job_id,
        number=claim.attempt,
        worker=claim.worker,
        started_at=claim.started_at,
        finished_at=now,
        duration_ms=max(0, int((now - claim.started_at).total_seconds() * 1000)),
        outcome=outcome,
        error_type=clean_text(error_type, 200),
        error_message=clean_text(error_message),
        traceback=clean_text(traceback),
    )


def record_lost_attempt(*, job: Job, now: datetime, outcome: str, error_type: str, error_message: str) -> None:
    """The attempt of a job whose worker died or was killed at its hard limit: written from
    the job's row, since the worker that held it is gone."""
    started = job.started_at or now
    JobAttempt.objects.update_or_create(
        job_id=job.id,
        number=job.attempts,
        defaults={
            "worker": job.worker,
            "started_at": started,
            "finished_at": now,
            "duration_ms": max(0, int((now - started).total_seconds() * 1000)),
            "outcome": outcome,
            "error_type": clean_text(error_type, 200),
            "error_message": clean_text(error_message),
        },
    )


_SUCCEED_POSTGRESQL = """
WITH done AS (
    UPDATE jobs_job SET status = 'succeeded', result = %s, finished_at = %s, lease_token = NULL,
        lease_expires_at = NULL, progress_percent = 100.0, error_type = '', error_message = '',
        error_traceback = '', updated_at = %s
    WHERE id = %s AND status = 'running' AND lease_token = %s
    RETURNING id
)
INSERT INTO jobs_jobattempt (job_id, number, worker, started_at, finished_at, duration_ms, outcome,
                             error_type, error_message, traceback)
SELECT id, %s, %s, %s, %s, %s, 'succeeded', '', '', '' FROM done
RETURNING job_id
"""


def job_succeed(*, claim: Claim, result: Any) -> bool:
    """Record the result; False when this attempt no longer holds the job (a zombie)."""
    result = clean_json(result)
    now = timezone.now()
    duration_ms = max(0, int((now - claim.started_at).total_seconds() * 1000))
    if connection.vendor == "postgresql":
        # The hot path in one statement, atomic by itself: the fenced update of the job and
        # the attempt's row, with no BEGIN/COMMIT round trips around them.
        fields = _job_fields()
        params = [
            fields["result"].get_db_prep_value(result, connection),
            now,
            now,
            uuid.UUID(claim.job_id),
            uuid.UUID(claim.lease_token),
            claim.attempt,
            claim.worker,
            claim.started_at,
            now,
            duration_ms,
        ]
        with prepared_cursor() as cursor:
            cursor.execute(_SUCCEED_POSTGRESQL, params)
            done = cursor.fetchone() is not None
        if done:
            _announce_finished(
                job_id=claim.job_id,
                kind=claim.kind,
                status=JobStatus.SUCCEEDED,
                callback_url=claim.callback_url,
                duration_ms=duration_ms,
            )
        return done
    with transaction.atomic():
        done = _held(claim).update(
            status=JobStatus.SUCCEEDED,
            result=result,
            finished_at=now,
            lease_token=None,
            lease_expires_at=None,
            progress_percent=100.0,
            error_type="",
            error_message="",
            error_traceback="",
            updated_at=now,
        )
        if done:
            _close_attempt(claim, now, JobAttempt.Outcome.SUCCEEDED)
            _announce_finished(
                job_id=claim.job_id,
                kind=claim.kind,
                status=JobStatus.SUCCEEDED,
                callback_url=claim.callback_url,
                duration_ms=int((now - claim.started_at).total_seconds() * 1000),
            )
    return bool(done)


def backoff_seconds(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": half the step is fixed, half random, so the
    delays grow from one attempt to the next yet retries of many jobs spread out."""
    step = min(cap, base * (2 ** max(0, attempt - 1)))
    return step / 2 + (rng or random).uniform(0, step / 2)


@dataclass(frozen=True)
class AttemptFailure:
    error_type: str
    message: str
    traceback: str = ""
    permanent: bool = False
    cancelled: bool = False


def job_fail_attempt(*, claim: Claim, failure: AttemptFailure) -> str:
    """Record a failed attempt. Returns the job's new status ('retrying', 'failed',
    'cancelled'), or 'stale' when this attempt no longer holds the job."""
    now = timezone.now()
    with transaction.atomic():
        job = _held(claim).select_for_update().first()
        if job is None:
            return "stale"
        if failure.cancelled:
            outcome = JobAttempt.Outcome.CANCELLED
        elif failure.permanent:
            outcome = JobAttempt.Outcome.PERMANENT
        else:
            outcome = JobAttempt.Outcome.FAILED
        _close_attempt(claim, now, outcome, failure.error_type, failure.message, failure.traceback)
        return _after_failed_attempt(job, now, failure)


def _after_failed_attempt(job: Job, now: datetime, failure: AttemptFailure) -> str:
    """Move a job whose attempt ended badly to its next state. Caller holds the row lock."""
    # Cleaned here, not only where the attempt's row is written: the dead letter copies these.
    job.error_type = clean_text(failure.error_type, 200)
    job.error_message = clean_text(failure.message)
    job.error_traceback = clean_text(failure.traceback)
    job.lease_token = None
    job.lease_expires_at = None
    if failure.cancelled or job.cancel_requested_at is not None:
        job.status = JobStatus.CANCELLED
        job.finished_at = now
    elif failure.permanent or job.attempts >= job.max_attempts:
        job.status = JobStatus.FAILED
        job.finished_at = now
    else:
        k = registry.get(job.kind) if job.kind in registry else None
        base = k.retry_base_seconds if k and k.retry_base_seconds is not None else settings.JOB_RETRY_BASE_SECONDS
        cap = k.retry_max_seconds if k and k.retry_max_seconds is not None else settings.JOB_RETRY_MAX_SECONDS
        job.status = JobStatus.RETRYING
        job.run_at = now + timedelta(seconds=backoff_seconds(job.attempts, base=base, cap=cap))
        job.published_at = None
        JobAttempt.objects.filter(job_id=job.id, number=job.attempts).update(retry_at=job.run_at)
    job.save(
        update_fields=[
            "status",
            "error_type",
            "error_message",
            "error_traceback",
            "lease_token",
            "lease_expires_at",
            "finished_at",
            "run_at",
            "published_at",
            "updated_at",
        ]
    )
    if job.status == JobStatus.FAILED:
        _park(job, now)
    if job.status == JobStatus.RETRYING:
        transaction.on_commit(lambda: signals.job_retried.send(sender=Job, job_id=str(job.id), kind=job.kind))
    else:
        duration = int((now - job.started_at).total_seconds() * 1000) if job.started_at else None
        _announce_finished(
            job_id=str(job.id), kind=job.kind, status=job.status, callback_url=job.callback_url, duration_ms=duration
        )
    return job.status


def _park(job: Job, now: datetime) -> DeadLetter:
    """Give a failed job its dead letter: a row, and a message on the dead_letter queue."""
    history = [
        {
            "attempt": a.number,
            "worker": a.worker,
            "outcome": a.outcome,
            "error_type": a.error_type,
            "error_message": a.error_message,
            "at": (a.finished_at or a.started_at).isoformat(),
        }
        for a in JobAttempt.objects.filter(job_id=job.id).order_by("number")
    ]
    letter = DeadLetter.objects.create(
        job=job,
        kind=job.kind,
        payload=job.payload,
        error_type=job.error_type,
        error_message=job.error_message,
        traceback=job.error_traceback,
        errors=history,
        attempts=job.attempts,
        created_at=now,
    )
    # A client's bad input is the client's to fix, not an operator's: parked, never paged.
    logger.log(
        logging.WARNING if job.error_type == CLIENT_ERROR_TYPE else logging.ERROR,
        "job %s (%s) failed after %s attempt(s) and was parked as dead letter %s: %s: %s",
        job.id,
        job.kind,
        job.attempts,
        letter.pk,
        job.error_type,
        job.error_message[:200],
    )
    dead_letter_publish_on_commit(dead_letter_id=letter.pk, job_id=str(job.id), kind=job.kind)
    transaction.on_commit(lambda: signals.job_dead_lettered.send(sender=Job, job_id=str(job.id), kind=job.kind))
    return letter

"""Unique jobs and debounce: a kind that declares `unique_by` (apps.jobs.registry.Kind) has at
most one job per client and value of those payload fields, enforced by the database
(constraint job_unique_key on (owner, unique_key)), never by a check before the insert.

- The key is the sha256 of the kind's name and its unique_by fields (canonical JSON), scoped
  to the client: the API is multi-tenant, so one client's job never deduplicates another's.
- unique_while="active": the key is held while the job is waiting, queued, running or
  retrying; the trigger job_unique_release (migration 0013) drops it in the UPDATE that
  writes the job's terminal status, wherever that comes from. `unique_for`, when given, caps
  the hold at that many seconds from the job's creation.
- unique_while="period": the key is held `unique_for` seconds from the job's creation
  (unique_until), whatever its state. A constraint cannot read the clock, so a submission
  that finds the key held past its end clears it and takes it, in the same transaction.
- debounce: a new job waits the debounce delay before it may start, and each duplicate
  submitted before it started moves its run_at to now + the delay.

A duplicate is the job that holds the key, marked `deduplicated` (job_deduplicated); the API
answers it with 200 and `Job-Deduplicated: true`. A workflow's jobs are never deduplicated:
each is a node of its own graph."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F
from django.db.models.functions import Coalesce, Greatest

from apps.core.errors import Conflict
from apps.jobs.lifecycle import store
from apps.jobs.models import Job, JobStatus
from apps.jobs.registry import Kind

# The response header that says a submission was answered with an existing job.
DEDUPLICATED_HEADER = "Job-Deduplicated"
# Rounds of insert, then read the holders: a holder that finished or whose period ended
# between the two lets the next round insert. More than a couple means a storm on one key.
ROUNDS = 3


def unique_key(*, k: Kind, payload: Any) -> str:
    """The key of a job of kind `k` (sha256 hex): its kind and the values of its unique_by
    fields, as canonical JSON. A field the payload leaves out is not the same as one set to
    null."""
    fields = {name: payload[name] for name in k.unique_by if name in payload}
    canonical = json.dumps([k.name, fields], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def job_deduplicated(job: Job) -> bool:
    """Whether jobs_create answered with the job that already held the key, not a new one."""
    return bool(getattr(job, "deduplicated", False))


def jobs_insert_deduplicating(rows: Sequence[Job], kinds: Sequence[Kind], now: datetime) -> list[Job]:
    """Insert new jobs (jobs_create's rows, with their kinds) and return them in order, each
    duplicate replaced by the job holding its key, marked deduplicated. A job of a kind
    without uniqueness goes through store.jobs_insert as usual; two rows of one call with the
    same key are one job, the second a duplicate of the first."""
    final, plain, pending = list(rows), [], []
    leaders: dict[str, int] = {}  # key -> position of the first row with it
    followers: list[tuple[int, str]] = []
    for position, (row, k) in enumerate(zip(rows, kinds, strict=True)):
        if not k.unique_by or row.workflow_id is not None:
            plain.append(row)
            continue
        _take_key(row, k, now)
        if row.unique_key in leaders:
            followers.append((position, row.unique_key))
        else:
            leaders[row.unique_key] = position
            pending.append(position)
    if plain:
        store.jobs_insert(plain)
    for _ in range(ROUNDS):
        if not pending:
            break
        inserted = store.jobs_insert_unique([rows[p] for p in pending])
        taken = [p for p in pending if rows[p].id not in inserted]
        pending = []
        if not taken:
            break
        holders = {
            job.unique_key: job
            for job in Job.objects.filter(owner_id=rows[0].owner_id, unique_key__in=[rows[p].unique_key for p in taken])
        }
        lapsed = []
        for p in taken:
            holder = holders.get(rows[p].unique_key)
            if holder is None:  # it finished since: insert again
                pending.append(p)
            elif _lapsed(holder, kinds[p], now):
                lapsed.append(holder.id)
                pending.append(p)
            else:
                final[p] = _duplicate(holder, kinds[p], now)
        if lapsed:
            # Only the key: status is not written, so the release trigger does not fire.
            Job.objects.filter(id__in=lapsed, unique_key__isnull=False).update(unique_key=None)
    if pending:
        raise Conflict(
            "Jobs with this unique key are being submitted and finished too fast to tell which stands; retry shortly.",
            code="unique_key_busy",
            headers={"Retry-After": "1"},
        )
    for position, key in followers:
        final[position] = _marked(final[leaders[key]])
    return final


def _take_key(row: Job, k: Kind, now: datetime) -> None:
    """Set a new job's key, its period's end, and a debounced job's wait."""
    row.unique_key = unique_key(k=k, payload=row.payload)
    if k.unique_while == "period" and k.unique_for is not None:
        row.unique_until = row.created_at + timedelta(seconds=k.unique_for)
    delay = k.debounce_seconds
    if delay is not None:
        row.run_at = max(row.run_at or now, now + timedelta(seconds=delay))


def _lapsed(holder: Job, k: Kind, now: datetime) -> bool:
    """Whether the holder's key has run out: its period ended, or (active) it is older than
    the kind's unique_for."""
    until = holder.unique_until
    if until is None and k.unique_for is not None:
        until = holder.created_at + timedelta(seconds=k.unique_for)
    return until is not None and until <= now


def _duplicate(holder: Job, k: Kind, now: datetime) -> Job:
    """The holder as the answer to a duplicate; debounced, its start moved to now + the delay
    when it has not started (one conditional UPDATE; a job claimed meanwhile is left alone).
    published_at is cleared so the relay publishes it when due: a message already on the
    broker finds it not due and is dropped by the claim."""
    delay = k.debounce_seconds
    if delay is not None and holder.status == JobStatus.QUEUED and holder.attempts == 0:
        start = now + timedelta(seconds=delay)
        moved = Job.objects.filter(id=holder.id, status=JobStatus.QUEUED, attempts=0).update(
            run_at=Greatest(Coalesce(F("run_at"), start), start), published_at=None, updated_at=now
        )
        if moved:
            holder.run_at = max(holder.run_at or start, start)
            holder.published_at, holder.updated_at = None, now
    holder.deduplicated = True  # type: ignore[attr-defined]
    return holder


def _marked(job: Job) -> Job:
    """A copy of `job` marked deduplicated (a second row of one batch with the first's key:
    the first keeps its own mark)."""
    duplicate = copy.copy(job)
    duplicate.deduplicated = True  # type: ignore[attr-defined]
    return duplicate

"""Idempotent submission: one job per (client, Idempotency-Key) for 24 hours, enforced by a
unique constraint rather than by a check-then-insert."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.errors import Conflict, InvalidInput, Unprocessable
from apps.jobs.lifecycle.submit import job_check_and_admit, jobs_create
from apps.jobs.lifecycle.unique import job_deduplicated
from apps.jobs.lifecycle.validation import CheckedJob
from apps.jobs.models import IdempotencyKey, Job
from apps.jobs.registry import UnknownKind, registry

IDEMPOTENCY_KEY_MAX_LENGTH = 255
IDEMPOTENCY_TTL = timedelta(hours=24)


@dataclass(frozen=True)
class Submission:
    job: Job
    status_code: int
    replayed: bool
    # The job already held the kind's unique key (apps.jobs.lifecycle.unique): answered 200,
    # and so is every replay of it.
    deduplicated: bool = False


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
    checked: CheckedJob | None = None
    for _ in range(3):
        existing = _idempotent_replay(owner=owner, key=idempotency_key, fingerprints=(fingerprint, as_given))
        if existing is not None:
            return existing
        if checked is None:  # once: a lost race ends in a replay, not in a second check
            checked = job_check_and_admit(
                owner=owner,
                kind=kind,
                payload=payload,
                priority=priority,
                max_attempts=max_attempts,
                run_at=run_at,
                callback_url=callback_url,
                from_client=from_client,
            )
        try:
            with transaction.atomic():
                [job] = jobs_create(owner=owner, checked=[checked], request_id=request_id)
                deduplicated = job_deduplicated(job)
                status_code = 200 if deduplicated else 202
                IdempotencyKey.objects.create(
                    owner=owner,
                    key=idempotency_key,
                    fingerprint=fingerprint,
                    job=job,
                    status_code=status_code,
                    # A deduplicated job is older than the key, whose 24 hours start now.
                    created_at=timezone.now() if deduplicated else job.created_at,
                )
            return Submission(job=job, status_code=status_code, replayed=False, deduplicated=deduplicated)
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
    # A 200 was a deduplicated submission (apps.jobs.lifecycle.unique): replayed as it was.
    return Submission(
        job=record.job, status_code=record.status_code, replayed=True, deduplicated=record.status_code == 200
    )

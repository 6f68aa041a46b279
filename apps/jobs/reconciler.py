"""The reconciler, run by beat every RECONCILE_INTERVAL_SECONDS. It makes the guarantees
hold when processes die or Redis forgets: it publishes what was committed but never
published, promotes retries whose backoff has ended, recovers jobs whose worker stopped
renewing its lease, republishes queued jobs after Redis lost its data, and publishes again
queued jobs whose message alone was lost (apps.jobs.stranded)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from apps.core.db import connections_reopen_if_broken
from apps.core.redis import key, redis_client
from apps.jobs.dispatch import dispatch_pass_if_due
from apps.jobs.lifecycle import AttemptFailure, job_after_failed_attempt, record_lost_attempt
from apps.jobs.models import Job, JobAttempt, JobStatus
from apps.jobs.pauses import pause_mirror_write, unpaused
from apps.jobs.publish import JobMessage
from apps.jobs.stranded import jobs_publish_again, jobs_republish_stranded_when_due

logger = logging.getLogger(__name__)

BATCH = 1000
# Called first inside each transaction the leader's sweep writes in; raises when this process
# no longer leads the control loop (beat passes the leader election's fence).
Fence = Callable[[], None]


def _unfenced() -> None:
    return None


# A key the reconciler keeps in Redis. When it is gone, Redis lost its data (a restart
# without persistence, a flush, a failover to an empty replica) and took our messages along.
BROKER_SENTINEL_KEY = key("broker-sentinel")


def jobs_promote_due(*, now: datetime, fence: Fence = _unfenced) -> int:
    """Retries whose backoff has ended become queued again, for the relay to publish."""
    with transaction.atomic():
        fence()
        return Job.objects.filter(status=JobStatus.RETRYING, run_at__lte=now).update(
            status=JobStatus.QUEUED, published_at=None, updated_at=now
        )


def jobs_relay_unpublished(*, now: datetime) -> int:
    """Publish queued jobs that are due and not on the broker, as far as each queue's window
    has room, from every client in turn (apps.jobs.dispatch): jobs held for their turn,
    submissions whose publish never happened (the web process died, Redis was down),
    promoted retries, deferred and scheduled jobs now due. Skipped when the leader's
    dispatcher thread made this pass in the last second."""
    return dispatch_pass_if_due(now=now)


def jobs_expire_leases(*, now: datetime, fence: Fence = _unfenced) -> int:
    """A running job whose lease expired lost its worker (kill -9, out of memory, a lost
    machine): count the attempt as spent, then retry it or park it as any failure would."""
    recovered = 0
    with transaction.atomic():
        fence()
        stale = list(
            Job.objects.select_for_update(skip_locked=True)
            .filter(status=JobStatus.RUNNING, lease_expires_at__lt=now)
            .order_by("lease_expires_at")[:100]
        )
        for job in stale:
            message = f"worker {job.worker or '?'} stopped renewing its lease (killed, out of memory or unreachable)"
            record_lost_attempt(
                job=job, now=now, outcome=JobAttempt.Outcome.LOST, error_type="WorkerLost", error_message=message
            )
            status = job_after_failed_attempt(job=job, now=now, failure=AttemptFailure("WorkerLost", message))
            logger.warning("job %s (%s): lease expired on attempt %s; now %s", job.id, job.kind, job.attempts, status)
            recovered += 1
    return recovered


def jobs_repair_broker_loss() -> int:
    """When Redis lost its data, republish every queued job that was already published; a
    message that survived after all is dropped by the claim, so duplicates are harmless."""
    if not redis_client().set(BROKER_SENTINEL_KEY, timezone.now().isoformat(), nx=True):
        return 0
    # A paused job's lost message is not sent again: marked unpublished, it waits for the
    # relay after its resume.
    Job.objects.filter(status=JobStatus.QUEUED, published_at__isnull=False).exclude(unpaused()).update(
        published_at=None
    )
    republished = 0
    last_id = None
    while True:
        # Keyset pagination on the primary key: stable while rows change under us.
        page = Job.objects.filter(status=JobStatus.QUEUED, published_at__isnull=False).filter(unpaused())
        if last_id is not None:
            page = page.filter(id__gt=last_id)
        rows = list(page.order_by("id").values_list("id", "kind", "queue", "request_id")[:BATCH])
        if not rows:
            break
        # Stamped published again: the stranded-job sweep reads FIFO order from the stamps.
        sent = jobs_publish_again([JobMessage.row(row) for row in rows])
        republished += len(sent)
        if len(sent) < len(rows):
            # Redis went away again mid-repair: forget the sentinel so the next sweep redoes it.
            redis_client().delete(BROKER_SENTINEL_KEY)
            break
        last_id = rows[-1][0]
    if republished:
        logger.warning("Redis had lost its data: republished %s queued job(s)", republished)
    return republished


def _pauses_mirror() -> int:
    """Write the pauses to the Redis key every process reads; returns how many there are."""
    paused = pause_mirror_write()
    return len(paused.queues) + len(paused.kinds)


def reconcile(*, now: datetime | None = None, fence: Fence = _unfenced) -> dict[str, int]:
    """One sweep. Each step stands alone, so Redis being down does not stop lease recovery,
    and a step that failed is -1 in the figures."""
    now = now or timezone.now()
    figures: dict[str, int] = {}
    steps = [
        ("promoted", lambda: jobs_promote_due(now=now, fence=fence)),
        ("relayed", lambda: jobs_relay_unpublished(now=now)),
        ("expired", lambda: jobs_expire_leases(now=now, fence=fence)),
        ("republished", jobs_repair_broker_loss),
        ("stranded", lambda: jobs_republish_stranded_when_due(fence=fence)),
        # Every process's view of the pauses comes from this key; Redis may have lost it.
        ("paused", _pauses_mirror),
    ]
    for name, step in steps:
        # A connection that broke in an earlier step or sweep is replaced, not reused.
        connections_reopen_if_broken()
        try:
            figures[name] = step()
        except Exception:
            logger.exception("reconciler step %s failed; the next sweep tries again", name)
            figures[name] = -1
    return figures

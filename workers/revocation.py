"""Revokes through Celery (Flower's revoke button and API, `celery control revoke`) reach the
job they mean.

Celery's revoke is a broadcast to the live workers: each remembers the task id (in memory,
for CELERY_WORKER_REVOKE_EXPIRES, three hours by default), discards any message with that id
it is given later, and with terminate kills the pool process running it now. Either way the
worker's main process sends `task_revoked` (celery/worker/request.py, Request._announce_revoked)
after acknowledging the message, so without this module the job stayed queued, or running
until its lease expired, with its message gone. Here:

- a discarded message of a queued job cancels the job (lifecycle.job_revoked);
- a terminated attempt is recorded as revoked and its job cancelled, fenced by the attempt's
  lease token as the hard time limit is (lifecycle.job_attempt_revoked);
- a revoke without terminate of a running job changes nothing: Celery lets the task run.

Every message of a job carries the job's id as its task id, so a worker remembers a revoke of
a job across its later messages too. Once the revoke has reached PostgreSQL the worker forgets
it: PostgreSQL holds the outcome, the claim drops any other message of a cancelled job, and a
later retry or redrive of the job must run. The other workers that heard the broadcast still
remember it; a message of the job published after the revoke is left queued by
lifecycle.job_revoked, and the stranded-job sweep publishes it again (apps.jobs.stranded).
"""

from __future__ import annotations

import logging
import signal
import time
from datetime import UTC, datetime
from typing import Any

from celery.signals import task_revoked
from celery.worker import state as worker_state
from django.db import close_old_connections

from apps.jobs import lifecycle
from apps.jobs.registry import registry
from workers.runtime import delivery_of

logger = logging.getLogger("workers.revocation")


def revoked_at(task_id: str) -> datetime | None:
    """When this worker heard the revoke of `task_id` (its revoked set keeps the monotonic
    time of each entry), as wall-clock time; None when it does not remember one."""
    entry = getattr(worker_state.revoked, "_data", {}).get(task_id)
    if not entry:
        return None
    try:
        inserted = float(entry[0])
    except (TypeError, ValueError, IndexError):
        return None
    return datetime.fromtimestamp(time.time() - (time.monotonic() - inserted), tz=UTC)


@task_revoked.connect(dispatch_uid="workers.revocation")
def job_task_revoked(
    sender: Any = None,
    request: Any = None,
    terminated: bool = False,
    signum: Any = None,
    expired: bool = False,
    **kwargs: Any,
) -> None:
    """Runs in the worker's main process, on its event loop: a few statements, never raises."""
    task_id = getattr(request, "id", None)
    args = getattr(request, "args", None) or ()
    if task_id is None or not args or getattr(sender, "name", None) not in registry:
        return
    job_id = str(args[0])
    try:
        close_old_connections()
        status = _apply(request, job_id=job_id, task_id=str(task_id), terminated=terminated, signum=signum)
    except Exception:
        # The revoke is kept, so the next message of the job is discarded (and tried) again;
        # meanwhile the stranded-job sweep publishes the job again.
        logger.exception("job %s: revoke of task %s could not be recorded", job_id, task_id)
        return
    worker_state.revoked.discard(task_id)
    how = "terminated" if terminated else "expired" if expired else "discarded"
    logger.warning(
        "job %s (%s): task %s revoked through Celery (%s); job is now %s", job_id, sender.name, task_id, how, status
    )


def _apply(request: Any, *, job_id: str, task_id: str, terminated: bool, signum: Any) -> str:
    if terminated:
        pid = getattr(request, "worker_pid", None)  # put there by JobRequest.on_accepted
        if pid:
            # Rebuilt as the pool process built it (workers.runtime.run_job), as on_timeout does.
            seed = lifecycle.lease_seed(
                task_id=task_id,
                delivery=delivery_of(getattr(request, "properties", None)),
                worker=getattr(request, "hostname", None) or "worker",
                pid=pid,
            )
            status = lifecycle.job_attempt_revoked(
                job_id=job_id, seed=seed, task_id=task_id, signal=_signal_name(signum)
            )
            if status != "stale":
                return status
        # Killed before its claim (the job is still queued), or a duplicate's process: the
        # job is cancelled only if it is still waiting for this message.
    return lifecycle.job_revoked(job_id=job_id, task_id=task_id, revoked_at=None if terminated else revoked_at(task_id))


def _signal_name(signum: Any) -> str:
    if signum is None:
        return ""
    try:
        return signal.Signals(int(signum)).name
    except (TypeError, ValueError):
        return str(signum)

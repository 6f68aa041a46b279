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
- a revoke without terminate of a running job changes nothing: Celery lets the task run;
- on a thread pool (worker-io) nothing can be killed, and Celery's terminate would fail
  (its thread pool has no terminate_job): a revoke with terminate of a job this worker holds
  cancels the job instead, as the API's cancel does. A running handler sees it at its next
  cancellation check and the attempt ends cancelled; a queued one never starts.

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

from celery.concurrency.thread import TaskPool as ThreadPool
from celery.signals import task_revoked
from celery.utils.functional import maybe_list
from celery.worker import control
from celery.worker import state as worker_state
from django.db import close_old_connections

from apps.core.errors import Conflict
from apps.jobs import lifecycle
from apps.jobs.models import Job
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


# Celery's own `revoke` control command, which the one below hands every other case to.
_celery_revoke = control.Panel.data["revoke"]


@control.control_command(variadic="task_id", signature="[id1 [id2 [... [idN]]]]")
def revoke(state: Any, task_id: Any, terminate: bool = False, signal: Any = None, **kwargs: Any) -> Any:
    """Celery's `revoke` (Flower's revoke and terminate, `celery control revoke`), registered
    under the same name: on a thread pool, terminate cancels the jobs this worker holds.

    Celery's terminate kills the pool process that runs the task. A thread cannot be killed,
    and the thread pool raises NotImplementedError, so the revoke used to leave the job
    running to its end. Here each job whose message this worker holds (running on a thread,
    or handed to the pool and about to start) is cancelled as the API's cancel does it, and
    Celery remembers the other ids as usual (a message of theirs that arrives later is
    discarded, then cancelled by job_task_revoked). Every other pool goes to Celery's own
    command unchanged."""
    if not terminate or not isinstance(getattr(state.consumer, "pool", None), ThreadPool):
        return _celery_revoke(state, task_id, terminate=terminate, signal=signal, **kwargs)
    ids = {str(i) for i in maybe_list(task_id) or []}
    cancelled = []
    for request in [worker_state.requests.get(i) for i in sorted(ids)]:
        if request is None or getattr(request, "name", None) not in registry or not request.args:
            continue
        ids.discard(request.id)
        cancelled.append(request.id)
        job_cancel_for_terminate(job_id=str(request.args[0]), task_id=request.id)
    rest = _celery_revoke(state, sorted(ids), terminate=False, **kwargs) if ids else None
    if not cancelled:
        return rest
    return control.ok(f"terminate on a thread pool: cancel of {', '.join(cancelled)} requested")


def job_cancel_for_terminate(*, job_id: str, task_id: str) -> str:
    """Cancel the job of a task revoked with terminate on a thread pool; returns its status
    afterwards. Runs on the worker's event loop: a few statements, never raises."""
    try:
        close_old_connections()
        job = lifecycle.job_cancel(job=Job.objects.only("id").get(id=job_id))
    except Conflict:
        status = "finished"  # it ended first: nothing to stop
    except Job.DoesNotExist:
        status = "missing"
    except Exception:
        logger.exception("job %s: terminate of task %s could not request its cancel", job_id, task_id)
        return "unknown"
    else:
        status = str(job.status)
    logger.warning(
        "job %s: task %s revoked through Celery with terminate on a thread pool, which cannot kill it: "
        "cancel requested; job is %s",
        job_id,
        task_id,
        status,
    )
    return status

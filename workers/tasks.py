"""Celery tasks: one per kind, named after the kind, plus the platform's own.

Imported by the worker and beat only (config.celery's `imports`); the web process publishes
by task name and never imports this module.
"""

from __future__ import annotations

import django

django.setup()  # beat imports this before Django's fixup has set up the apps

import logging  # noqa: E402
from typing import Any  # noqa: E402

from celery import Task  # noqa: E402
from celery.concurrency.thread import TaskPool as ThreadPool  # noqa: E402
from celery.signals import (  # noqa: E402
    celeryd_init,
    setup_logging,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)
from celery.worker.request import Request  # noqa: E402
from django.db import close_old_connections  # noqa: E402

from apps.core import redis as platform_redis  # noqa: E402
from apps.deadletters.monitor import dead_letters_monitor  # noqa: E402
from apps.jobs import lifecycle  # noqa: E402
from apps.jobs.operations import bulk_operations_advance  # noqa: E402
from apps.jobs.reconciler import reconcile as reconcile_jobs  # noqa: E402
from apps.jobs.registry import registry  # noqa: E402
from apps.jobs.retention import prune as prune_old  # noqa: E402
from apps.ops.alerts import queues_monitor  # noqa: E402
from apps.ops.control import NotLeader  # noqa: E402
from apps.schedules.firing import schedules_fire_due  # noqa: E402
from config.celery import app  # noqa: E402
from workers import heartbeat, revocation  # noqa: E402, F401  (the heartbeat in Redis; revokes reach their jobs)
from workers.outcomes import AttemptFailed  # noqa: E402
from workers.runtime import delivery_of, run_job  # noqa: E402

logger = logging.getLogger("workers.tasks")


@setup_logging.connect(dispatch_uid="workers.logging")
def use_django_logging(**kwargs: object) -> None:
    """Celery keeps Django's LOGGING (JSON lines) instead of installing its own handlers."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)


@celeryd_init.connect(dispatch_uid="workers.transport")
def use_shared_client_transport(conf: Any = None, **kwargs: Any) -> None:
    """The worker's broker connections use kombu's Redis transport with one client per
    channel (workers.transport). Only the worker: Flower tells brokers apart by the URL's
    scheme, which a transport named by its class path would change. Only for redis://: a
    sentinel:// broker keeps kombu's SentinelTransport, whose channels ask the sentinels for
    the master on every new connection; workers.transport builds on the plain channel."""
    if conf is not None and str(conf.broker_url or "").startswith("redis://"):
        conf.broker_transport = "workers.transport:Transport"


@worker_process_init.connect(dispatch_uid="workers.write_behind.start")
def start_write_behind(**kwargs: object) -> None:
    """A pool process sends its metrics and doorbells from a background thread, so a job's
    process is free for the next job while they travel (apps.core.redis)."""
    platform_redis.write_behind_start()


@worker_process_shutdown.connect(dispatch_uid="workers.write_behind.stop")
def stop_write_behind(**kwargs: object) -> None:
    platform_redis.write_behind_stop()


@worker_ready.connect(dispatch_uid="workers.write_behind.threads")
def start_write_behind_for_threads(sender: Any = None, **kwargs: object) -> None:
    """A thread pool (worker-io) forks nothing and sends no worker_process_init: its one
    process, which runs every job, starts the write-behind thread once it is ready. Its
    queue is thread-safe, and each job's batch is its own (a context variable)."""
    if isinstance(getattr(sender, "pool", None), ThreadPool):
        platform_redis.write_behind_start()


@worker_shutdown.connect(dispatch_uid="workers.write_behind.threads.stop")
def stop_write_behind_for_threads(**kwargs: object) -> None:
    platform_redis.write_behind_stop()  # a no-op where this process did not start one


class JobRequest(Request):
    def on_accepted(self, pid: int, time_accepted: float) -> None:
        # task_revoked's receivers get this request's Context, which lacks the pool process's
        # pid: workers.revocation needs it to rebuild a terminated attempt's lease token.
        self._request_dict["worker_pid"] = pid
        super().on_accepted(pid, time_accepted)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        """Runs in the worker's main process. At the hard limit the child that ran the job
        is killed; record that attempt's end now rather than when its lease expires. Only that
        attempt's: its lease token is rebuilt from what this request knows (its task id and
        delivery tag, the worker's name, the child's pid; see lifecycle.lease_seed), so a newer
        attempt of the same job, claimed by another child after this one's lease expired, is
        left alone."""
        super().on_timeout(soft, timeout)
        if soft or not self.args:
            return
        try:
            close_old_connections()
            # The same worker name run_job reads from its task's request.
            seed = lifecycle.lease_seed(
                task_id=self.id,
                delivery=delivery_of(self.request_dict.get("properties")),
                worker=self.hostname or "worker",
                pid=self.worker_pid,
            )
            status = lifecycle.job_attempt_timed_out(job_id=str(self.args[0]), seed=seed, limit=timeout)
            logger.warning("job %s (%s): killed at its hard time limit; job is now %s", self.args[0], self.name, status)
        except Exception:
            logger.exception("job %s: could not record its hard time limit; its lease will expire", self.args[0])


class JobTask(Task):
    # Late acks + reject on worker loss: a message is acknowledged only after the job's
    # outcome is in PostgreSQL, and a killed child puts it back on the queue.
    # https://docs.celeryq.dev/en/stable/userguide/configuration.html#task-acks-late
    Request = JobRequest
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    typing = False
    # An attempt that failed for good ends its task as a failure (workers.outcomes), which
    # Celery then logs at INFO without a traceback: the runtime has logged it already.
    throws = (AttemptFailed,)


def _register_kinds() -> None:
    for k in registry:
        app.task(
            name=k.name,
            base=JobTask,
            bind=True,
            queue=k.queue_for(k.priority),
            soft_time_limit=k.soft_time_limit,
            time_limit=k.time_limit,
        )(run_job)


_register_kinds()


@app.task(name="platform.reconcile", ignore_result=True)
def reconcile(fence: Any = None) -> dict[str, int]:
    # Beat runs this inline and passes its leader's fence (workers.beat); never queued.
    return reconcile_jobs(fence=fence) if fence is not None else reconcile_jobs()


@app.task(name="platform.schedules", ignore_result=True)
def fire_schedules(fence: Any = None) -> None:
    # Beat runs this inline on its leader, every SCHEDULE_SWEEP_SECONDS, with the leader's
    # fence (workers.beat); never queued. It returns no figures, so the control loop's pulse
    # (last_sweep_at) stays the reconciler's; apps.schedules.firing logs what it fired.
    try:
        schedules_fire_due(fence=fence) if fence is not None else schedules_fire_due()
    except NotLeader as exc:
        logger.info("schedules: not fired here: %s", exc)


@app.task(name="platform.dead_letter_monitor", ignore_result=True)
def dead_letter_monitor() -> dict[str, int]:
    return dead_letters_monitor()


@app.task(name="platform.prune", ignore_result=True)
def prune() -> dict[str, int]:
    return prune_old()


@app.task(name="platform.queue_monitor", ignore_result=True)
def queue_monitor() -> dict[str, int]:
    return queues_monitor()


@app.task(name="platform.bulk_operations", ignore_result=True)
def bulk_operations() -> dict[str, int]:
    return bulk_operations_advance()

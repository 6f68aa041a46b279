"""The running attempts' leases, renewed by one thread per worker process, and the time
limits the pool cannot enforce (workers.runtime runs the jobs; this keeps them held).

On the prefork pool Celery interrupts a handler at its soft time limit and kills the child at
its hard one (JobRequest.on_timeout records that attempt). A thread cannot be interrupted or
killed, so on worker-io's thread pool (docs/kinds.md, "I/O-bound kinds") the limits are kept
here, the same way on every pool:
- the soft limit: the handler's context answers `is_cancelled()` True and `check_cancelled()`
  raises SoftTimeLimitExceeded once it has passed, and the attempt ends as TimeLimitExceeded;
- the hard limit: this keeper stops renewing the lease and ends the attempt at once as
  TimeLimitExceeded (retrying, or failed with its dead letter), fenced by its lease token.
  The abandoned thread runs on until its call returns (every outside call carries a timeout),
  and every write it then makes is refused by the same fence.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import close_old_connections, connection

from apps.jobs import flow, lifecycle
from apps.jobs.registry import Kind

if TYPE_CHECKING:
    from workers.joblog import AttemptLog

logger = logging.getLogger("workers.runtime")

# Guards a process's first look at its keeper: the threads of a thread pool race to it.
_SETUP = threading.Lock()


class Lease:
    """The running attempt's hold on its job, renewed by the process's LeaseKeeper. `lost`
    tells the handler's context to stop early: the reconciler gave the job to someone else
    (the fence in every write already protects the newer attempt), it was cancelled, or it
    ran past its hard time limit (`timed_out`)."""

    __slots__ = ("claim", "due", "hard_at", "joblog", "kind", "lost", "seed", "slot", "soft_at", "timed_out")

    def __init__(
        self, claim: lifecycle.Claim, kind: Kind, slot: flow.Slot | None, due: float, seed: str | None = None
    ) -> None:
        now = time.monotonic()
        self.claim = claim
        self.kind = kind
        self.slot = slot
        self.due = due
        self.seed = seed
        self.soft_at = now + kind.soft_time_limit
        self.hard_at = now + kind.time_limit
        self.lost = False
        self.timed_out = False
        # The attempt's log, written at each renewal; None when logs are not kept.
        self.joblog: AttemptLog | None = None


class LeaseKeeper:
    """One daemon thread per worker process renews the leases of the jobs running there.

    A thread started per job cost a noop job more than its claim; this one is started in the
    process that runs jobs (never before the pool forks), ends (closing its connection) when
    it wakes to find nothing held, and a job that ends before its first renewal is due costs
    two dictionary operations. On a thread pool many jobs share it: every change to its table
    holds its lock."""

    def __init__(self) -> None:
        self._pid = 0
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @staticmethod
    def interval() -> float:
        return max(0.2, settings.JOB_LEASE_SECONDS / 3)

    def hold(
        self, claim: lifecycle.Claim, *, kind: Kind, slot: flow.Slot | None = None, seed: str | None = None
    ) -> Lease:
        pid = os.getpid()
        if self._pid != pid:  # a forked child: the parent's thread did not come along
            with _SETUP:
                if self._pid != pid:
                    self._leases, self._lock, self._thread = {}, threading.Lock(), None
                    self._pid = pid
        lease = Lease(claim, kind, slot, time.monotonic() + self.interval(), seed)
        with self._lock:
            self._leases[claim.job_id] = lease
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
                self._thread.start()
        return lease

    def release(self, lease: Lease) -> None:
        with self._lock:
            if self._leases.get(lease.claim.job_id) is lease:
                del self._leases[lease.claim.job_id]

    def _run(self) -> None:
        interval = self.interval()
        while True:
            now = time.monotonic()
            with self._lock:
                leases = list(self._leases.values())
                if not leases:  # idle: end, and let the next hold() start a new one
                    self._thread = None
                    connection.close()
                    return
            for lease in [lease for lease in leases if lease.hard_at <= now]:
                self._abandon(lease)
            due = [lease for lease in leases if lease.due <= now and not lease.lost]
            for lease in due:
                self._renew(lease)
                lease.due = time.monotonic() + interval
            # A lease taken while this waits is due a whole interval after it was taken,
            # never sooner than this wait ends: no wake-up call is needed. Its hard limit is
            # met within one interval at worst.
            later = [min(lease.due, lease.hard_at) for lease in leases if not lease.lost]
            time.sleep(max(0.05, min([interval, *(d - time.monotonic() for d in later)])))

    def _renew(self, lease: Lease) -> None:
        try:
            close_old_connections()  # this thread's own connection: too old or broken, replaced
            if not lifecycle.job_heartbeat(claim=lease.claim):
                lease.lost = True
                self.release(lease)
                return
            if lease.slot:  # under the key it was taken in: the kind's, or its limit key's
                flow.concurrency_renew(lease.slot, lease_seconds=settings.JOB_LEASE_SECONDS)
            if lease.joblog is not None:
                # What the handler logged so far, so a process that dies keeps it (one
                # INSERT, only when there are new lines).
                _flush_log(lease)
        except Exception:
            logger.exception("job %s: could not renew its lease", lease.claim.job_id)
            connection.close()  # this thread's own; the next renewal opens a fresh one

    def _abandon(self, lease: Lease) -> None:
        """The attempt ran past its hard time limit and nothing here can stop its thread: stop
        renewing, and end the attempt now (as JobRequest.on_timeout does for a killed prefork
        child), fenced by its token. Without a seed (no Celery request) the lease expires and
        the reconciler ends it instead."""
        lease.timed_out = lease.lost = True
        self.release(lease)
        job_id, limit = lease.claim.job_id, lease.kind.time_limit
        if lease.seed is None:
            logger.warning("job %s: past its hard time limit of %g s; its lease is left to expire", job_id, limit)
            return
        try:
            close_old_connections()
            if lease.joblog is not None:  # while the lease still holds: the last chance
                _flush_log(lease, final=True)
            status = lifecycle.job_attempt_timed_out(job_id=job_id, seed=lease.seed, limit=limit, killed=False)
            logger.warning("job %s: abandoned at its hard time limit of %g s; job is now %s", job_id, limit, status)
        except Exception:
            logger.exception("job %s: could not record its hard time limit; its lease will expire", job_id)
            connection.close()


def _flush_log(lease: Lease, *, final: bool = False) -> None:
    """Write the attempt's new log lines on this thread's connection. Not writing them
    loses only lines, never the lease: the error is logged and the next renewal tries again."""
    assert lease.joblog is not None
    try:
        lease.joblog.flush(final=final)
    except Exception:
        logger.exception("job %s: could not write its log lines", lease.claim.job_id)
        connection.close()  # this thread's own; the next renewal opens a fresh one


keeper = LeaseKeeper()

"""Beat's scheduler, and the election that lets any number of beats run with one leader.

Entries marked `inline` run inside the beat process instead of being sent to a queue:
recovering crashed work and relaying the outbox must not wait behind the very backlog or the
dead workers they exist to repair.

The leader also runs the fair dispatcher's thread (apps.jobs.dispatch), which tops the
queues' windows in Redis up from the jobs held in PostgreSQL many times a second.

Every beat runs an elector thread that takes or renews the control loop's lease in
PostgreSQL (apps.ops.control explains why a lease row). Only the beat that holds it runs any
entry; the others stand by and take over within CONTROL_LEASE_SECONDS +
CONTROL_ELECTION_INTERVAL_SECONDS of the leader's last renewal. The elector is a thread of its
own so that a slow sweep never delays a renewal, and the leader stops acting as soon as its
own deadline (counted from before its last successful renewal) passes, which is before the
database lets anyone else take the lease."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from celery.beat import Scheduler
from django.conf import settings
from django.db import connections

from apps.core.db import connections_reopen_if_broken
from apps.jobs.dispatch import Dispatcher
from apps.ops import control

logger = logging.getLogger("workers.beat")

# How long before its lease's end (by its own clock) the leader stops acting: room for a
# sweep's step that began just before the deadline.
_SAFETY_SECONDS = 0.5


def beat_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Elector:
    """Takes and renews the lease on a thread of its own, with its own database connection."""

    def __init__(self, *, identity: str, lease_seconds: float, interval: float, stale_seconds: float) -> None:
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.interval = interval
        self.stale_seconds = stale_seconds
        self.epoch: int | None = None
        self._leading_until = 0.0  # time.monotonic() past which this process must not act
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="control-loop-elector", daemon=True)
        self._last_error = ""

    @property
    def leading(self) -> bool:
        return self.epoch is not None and time.monotonic() < self._leading_until

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, resign: bool = True) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval + 5)
        if resign and self.epoch is not None:
            try:
                connections_reopen_if_broken()
                if control.control_loop_resign(identity=self.identity):
                    logger.info("control loop: %s resigned the lead", self.identity)
            except Exception as exc:
                logger.warning("control loop: could not resign the lead (it expires by itself): %s", exc)

    def fence(self) -> None:
        """Called first in each transaction the leader's sweep writes in."""
        if self.epoch is None or not self.leading:
            raise control.NotLeader(f"{self.identity} does not lead the control loop")
        control.control_loop_fence(identity=self.identity, epoch=self.epoch)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.elect_once()
                self.check_stall()
                self._stop.wait(self.interval)
        finally:
            connections.close_all()

    def elect_once(self) -> None:
        started = time.monotonic()
        try:
            connections_reopen_if_broken()
            epoch = control.control_loop_elect(identity=self.identity, lease_seconds=self.lease_seconds)
        except Exception as exc:
            # Cannot reach the database: keep the deadline we had; it runs out by itself.
            error = f"{type(exc).__name__}: {exc}".strip()
            if error != self._last_error:
                logger.warning("control loop: election failed (%s); %s", error, self._standing())
            self._last_error = error
            return
        self._last_error = ""
        if epoch is None:
            if self.epoch is not None:
                logger.warning("control loop: no longer leading (%s took the lease)", self.identity)
            self.epoch, self._leading_until = None, 0.0
            return
        if epoch != self.epoch or not self.leading:
            logger.info("control loop: leading now as %s (epoch %s)", self.identity, epoch)
        self.epoch = epoch
        self._leading_until = started + self.lease_seconds - _SAFETY_SECONDS

    def _standing(self) -> str:
        if not self.leading:
            return "not leading"
        return f"still leading for {self._leading_until - time.monotonic():.1f} s unless renewed"

    def check_stall(self) -> None:
        """Any beat, leading or not, alerts once when the loop has had no successful sweep for
        CONTROL_LOOP_STALE_SECONDS (its leader's sweeps keep failing, or it hangs)."""
        try:
            stalled = control.control_loop_stall_claim(stale_seconds=self.stale_seconds)
        except Exception:
            return  # the database is away: the election's warning says so
        if stalled is not None:
            control.control_loop_stall_alert(stalled, noticed_by=self.identity)


class InlineScheduler(Scheduler):
    elector: Elector | None = None
    dispatcher: Dispatcher | None = None

    def setup_schedule(self) -> None:
        import workers.tasks  # noqa: F401  (registers platform.reconcile in this process)

        super().setup_schedule()
        if self.elector is None:
            self.elector = Elector(
                identity=beat_identity(),
                lease_seconds=settings.CONTROL_LEASE_SECONDS,
                interval=settings.CONTROL_ELECTION_INTERVAL_SECONDS,
                stale_seconds=settings.CONTROL_LOOP_STALE_SECONDS,
            )
            self.elector.start()
        if self.dispatcher is None:
            # Fair dispatch tops the queues' windows up many times a second: a thread of its
            # own, acting only while this beat leads, rather than a beat entry.
            elector = self.elector
            self.dispatcher = Dispatcher(leading=lambda: elector.leading)
            self.dispatcher.start()

    def close(self) -> None:
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.elector is not None:
            self.elector.stop()
        super().close()

    def apply_entry(self, entry, producer=None):  # type: ignore[no-untyped-def]
        elector = self.elector
        if elector is None or not elector.leading:
            return None  # another beat leads; this one stands by
        if not entry.options.get("inline"):
            return super().apply_entry(entry, producer=producer)
        kwargs = dict(entry.kwargs)
        if entry.options.get("fenced"):
            kwargs["fence"] = elector.fence
        started = time.monotonic()
        connections_reopen_if_broken()
        try:
            figures = self.app.tasks[entry.task](*entry.args, **kwargs)
        except Exception:
            logger.exception("inline task %s failed", entry.task)
            return None
        if isinstance(figures, dict):
            if any(figures.values()):
                logger.info("%s: %s in %.0f ms", entry.task, figures, (time.monotonic() - started) * 1000)
            if entry.options.get("fenced") and all(v >= 0 for v in figures.values()):
                self._record_sweep(elector, figures)
        return None

    def _record_sweep(self, elector: Elector, figures: dict[str, int]) -> None:
        epoch = elector.epoch
        if epoch is None:
            return
        try:
            control.control_loop_sweep_record(identity=elector.identity, epoch=epoch, figures=figures)
        except Exception as exc:
            logger.warning("control loop: could not record the sweep: %s", exc)

"""The control loop's lease: which `beat` leads, whether it still does, and whether its
sweeps are succeeding.

Why a lease row and not an advisory lock: a session-level advisory lock is held by a
connection, so a leader cut off from PostgreSQL by a partition keeps it until the server's
TCP keepalives notice (minutes), and the leader itself cannot tell how long it may go on
acting. A lease row with an expiry set from the database's clock is the same for every
process: a leader that cannot renew it stops acting when its own deadline passes (measured
from before its last renewal, so it stops before anyone else may start), and another beat
takes the row once the database says it has run out. Each new leader gets a higher `epoch`,
and the leader's transactions check it (`control_loop_fence`), so a leader that stalled and
woke up after losing the row has its writes refused instead of acting twice."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.core.alerts import notify
from apps.ops.models import ControlLoop

logger = logging.getLogger("apps.ops.control")

LOOP = "beat"


class NotLeader(Exception):
    """This process no longer leads the control loop; its write must not happen."""


def db_now() -> datetime:
    """The database's clock: every beat compares lease expiries against the same clock,
    whatever their own machines' clocks say."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT clock_timestamp()")
            return cursor.fetchone()[0]
    return timezone.now()


def _locked_row(name: str) -> ControlLoop:
    row = ControlLoop.objects.select_for_update().filter(name=name).first()
    if row is None:  # the migration creates it; a flushed test database has none
        try:
            with transaction.atomic():
                ControlLoop.objects.create(name=name)
        except IntegrityError:
            pass  # another beat created it first
        row = ControlLoop.objects.select_for_update().get(name=name)
    return row


def control_loop_elect(*, identity: str, lease_seconds: float, name: str = LOOP) -> int | None:
    """Take or renew the lead for `identity`. Returns the epoch it leads with, or None when
    another process holds an unexpired lease."""
    with transaction.atomic():
        row = _locked_row(name)
        now = db_now()
        expires = now + timedelta(seconds=lease_seconds)
        held = bool(row.leader) and row.lease_expires_at is not None and row.lease_expires_at > now
        if held and row.leader != identity:
            return None
        if not held:
            row.leader, row.epoch, row.elected_at = identity, row.epoch + 1, now
        row.lease_expires_at = expires
        row.save(update_fields=["leader", "epoch", "elected_at", "lease_expires_at"])
        return row.epoch


def control_loop_resign(*, identity: str, name: str = LOOP) -> bool:
    """Give the lead up at once (a clean shutdown), so another beat need not wait it out."""
    return bool(ControlLoop.objects.filter(name=name, leader=identity).update(leader="", lease_expires_at=None))


def control_loop_fence(*, identity: str, epoch: int, name: str = LOOP) -> None:
    """Inside the transaction about to write: lock the lease row and raise NotLeader unless
    `identity` still leads with `epoch`. The lock holds off a takeover until the transaction
    ends, so the write happens under a lease that was valid for all of it."""
    if not connection.in_atomic_block:
        raise RuntimeError("control_loop_fence must run inside the transaction it guards")
    still = (
        ControlLoop.objects.select_for_update()
        .filter(name=name, leader=identity, epoch=epoch, lease_expires_at__gt=db_now())
        .values_list("epoch", flat=True)
        .first()
    )
    if still is None:
        raise NotLeader(f"{identity} no longer leads {name} with epoch {epoch}")


def control_loop_sweep_record(*, identity: str, epoch: int, figures: dict[str, Any], name: str = LOOP) -> bool:
    """A sweep in which every step succeeded: what /readyz and /metrics call the loop's pulse."""
    return bool(
        ControlLoop.objects.filter(name=name, leader=identity, epoch=epoch).update(
            last_sweep_at=db_now(), last_sweep_figures=figures
        )
    )


@dataclass(frozen=True)
class LoopStatus:
    leader: str
    epoch: int
    lease_expires_at: datetime | None
    last_sweep_at: datetime | None
    # Seconds since the last successful sweep (or since the loop's first leader, when none
    # has succeeded yet); None when no beat has ever run.
    stalled_for: float | None

    def stale(self, threshold: float) -> bool:
        return self.stalled_for is None or self.stalled_for > threshold


def control_loop_status(*, name: str = LOOP) -> LoopStatus:
    now = db_now()
    row = ControlLoop.objects.filter(name=name).first()
    if row is None:
        return LoopStatus("", 0, None, None, None)
    since = row.last_sweep_at or row.elected_at
    lease_live = row.lease_expires_at is not None and row.lease_expires_at > now
    return LoopStatus(
        leader=row.leader if lease_live else "",
        epoch=row.epoch,
        lease_expires_at=row.lease_expires_at,
        last_sweep_at=row.last_sweep_at,
        stalled_for=None if since is None else max(0.0, (now - since).total_seconds()),
    )


def control_loop_stall_claim(*, stale_seconds: float, name: str = LOOP) -> ControlLoop | None:
    """The row, when the loop has had no successful sweep for `stale_seconds` and nobody has
    alerted this stall yet. One conditional update: of the beats and web processes that
    notice a stall at once, exactly one alerts it."""
    now = db_now()
    cutoff = now - timedelta(seconds=stale_seconds)
    stalled = Q(last_sweep_at__lt=cutoff) | Q(last_sweep_at__isnull=True, elected_at__lt=cutoff)
    unalerted = Q(stall_alerted_at__isnull=True) | Q(stall_alerted_at__lt=F("last_sweep_at"))
    if not ControlLoop.objects.filter(stalled, unalerted, name=name).update(stall_alerted_at=now):
        return None
    return ControlLoop.objects.filter(name=name).first()


def control_loop_stall_alert(row: ControlLoop, *, noticed_by: str) -> None:
    last = row.last_sweep_at.isoformat() if row.last_sweep_at else "never"
    logger.error(
        "ALERT control loop stalled: no sweep has succeeded for over %.0f s (last %s; leader %s; noticed by %s)",
        settings.CONTROL_LOOP_STALE_SECONDS,
        last,
        row.leader or "none",
        noticed_by,
    )
    notify(
        "[jobs] control loop stalled",
        {
            "last_sweep_at": last,
            "threshold_seconds": settings.CONTROL_LOOP_STALE_SECONDS,
            "leader": row.leader,
            "noticed_by": noticed_by,
        },
    )

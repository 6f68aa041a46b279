from __future__ import annotations

from django.db import models


class ControlLoop(models.Model):
    """The lease that makes one `beat` process the leader of the control loop (the reconciler,
    the monitors, pruning, bulk operations), and the loop's own health.

    One row per loop. A beat leads while `leader` names it and `lease_expires_at`, set from the
    database's clock, lies ahead; it renews every CONTROL_ELECTION_INTERVAL_SECONDS, and any
    other beat takes the row once the lease has run out. `epoch` grows with each new leader
    and fences the leader's writes (workers.beat)."""

    name = models.CharField(primary_key=True, max_length=50)
    leader = models.CharField(max_length=255, blank=True, default="")
    epoch = models.BigIntegerField(default=0)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    elected_at = models.DateTimeField(null=True, blank=True)
    # The end of the last sweep in which every step succeeded; /readyz and /metrics read it.
    last_sweep_at = models.DateTimeField(null=True, blank=True)
    last_sweep_figures = models.JSONField(default=dict, blank=True)
    # When the loop's stall was last alerted: one alert per stall, whoever notices it first.
    stall_alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "control loop"

    def __str__(self) -> str:
        return f"{self.name} (leader {self.leader or 'none'}, epoch {self.epoch})"

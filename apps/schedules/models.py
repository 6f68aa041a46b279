"""A schedule: a kind and payload the control loop's leader submits as a job at each of its
times, by cron expression in a time zone or every N seconds (apps.schedules.firing)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.timezone import now as _now

from apps.jobs.models import Priority


class Schedule(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Served by schedule_owner_created; the jobs a firing makes belong to this owner.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    kind = models.CharField(max_length=100)
    payload = models.JSONField(default=dict, blank=True)
    # Blank: the kind's own priority, as for a job submitted without one.
    priority = models.CharField(max_length=8, choices=Priority.choices, blank=True, default="")
    # Exactly one of these two (the check constraint below): a five-field cron expression,
    # evaluated in `timezone`, or an interval.
    cron = models.CharField(max_length=200, blank=True, default="")
    timezone = models.CharField(max_length=64, default="UTC")
    every_seconds = models.PositiveIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    # When the next firing is due (UTC); the leader fires rows where this has passed.
    next_run_at = models.DateTimeField()
    # The last firing: when it happened, and the time it was due (its job's scheduled_for).
    last_fired_at = models.DateTimeField(null=True, blank=True)
    last_scheduled_for = models.DateTimeField(null=True, blank=True)
    last_job_id = models.UUIDField(null=True, blank=True)
    # Why the last firing made no job (its kind gone, or its payload no longer fits); cleared
    # by the next firing that makes one.
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=_now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(every_seconds__isnull=True) & ~Q(cron=""))
                | (Q(every_seconds__isnull=False, every_seconds__gte=1) & Q(cron="")),
                name="schedule_cron_xor_every",
            )
        ]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="schedule_owner_created"),
            # The leader's sweep asks, every SCHEDULE_SWEEP_SECONDS, for the enabled schedules
            # that are due: partial, so disabled ones cost it nothing.
            models.Index(fields=["next_run_at"], name="schedule_due", condition=Q(enabled=True)),
        ]

    def __str__(self) -> str:
        timing = self.cron or f"every {self.every_seconds} s"
        return f"{self.kind} ({timing})"

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.jobs.models import Job


class DeadLetter(models.Model):
    """A job parked after its last attempt or a permanent error. Never dropped silently:
    it stays `open` until staff redrive or discard it."""

    class State(models.TextChoices):
        OPEN = "open"
        REDRIVEN = "redriven"
        DISCARDED = "discarded"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="dead_letters")
    kind = models.CharField(max_length=100)
    payload = models.JSONField(default=dict)
    error_type = models.CharField(max_length=200, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    # Every attempt's error, oldest first: [{attempt, worker, error_type, error_message, at}].
    errors = models.JSONField(default=list)
    attempts = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True, default="")
    # Set once the monitor has raised its alert for this letter.
    alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The admin's unfiltered list, newest first, and its date hierarchy's ends.
            models.Index(fields=["-created_at"], name="dl_created"),
            models.Index(fields=["state", "-created_at"], name="dl_state_created"),
            models.Index(fields=["kind", "-created_at"], name="dl_kind_created"),
            models.Index(fields=["error_type", "-created_at"], name="dl_error_created"),
            models.Index(fields=["created_at"], name="dl_unalerted", condition=Q(alerted_at__isnull=True)),
        ]
        constraints = [
            # At most one open letter per job: a second park of the same job is refused by the database.
            models.UniqueConstraint(fields=["job"], condition=Q(state="open"), name="dl_one_open_per_job"),
        ]

    def __str__(self) -> str:
        return f"dead letter {self.pk} for {self.kind} {self.job_id}"

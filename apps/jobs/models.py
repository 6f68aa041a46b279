from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class JobStatus(models.TextChoices):
    # A workflow's job whose dependencies have not all finished: held in PostgreSQL, never on
    # the broker, never claimed or relayed (each of those selects `queued`) until the
    # workflows layer flips it to queued in the transaction that finishes its last one.
    WAITING = "waiting"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
# Waiting counts as active: it was admitted (and counts against the client's in-flight
# quota) and may still be cancelled.
ACTIVE_STATUSES = frozenset({JobStatus.WAITING, JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRYING})


class Priority(models.TextChoices):
    # The priority chooses the Redis queue; workers take from `high` before `default` before `low`.
    HIGH = "high"
    DEFAULT = "default"
    LOW = "low"


class Job(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: every index below that starts with owner serves it, and each index
    # costs every status change a write (a job changes status at least twice).
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs", db_index=False)
    kind = models.CharField(max_length=100)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.DEFAULT)
    queue = models.CharField(max_length=64)

    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField()
    # The attempts one submission (or one redrive) grants; a redrive adds this many again.
    attempt_allowance = models.PositiveIntegerField(default=1)

    progress_percent = models.FloatField(null=True, blank=True)
    progress_message = models.CharField(max_length=500, blank=True, default="")
    result = models.JSONField(null=True, blank=True)
    error_type = models.CharField(max_length=200, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    error_traceback = models.TextField(blank=True, default="")

    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # The earliest moment the job may start: a scheduled job's `run_at`, or the end of a
    # retry's backoff. Held in PostgreSQL and published when due, never as a Celery ETA.
    run_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    # Outbox: set once the message is on the broker; the relay publishes what stays unset.
    published_at = models.DateTimeField(null=True, blank=True)
    # The lease a running attempt holds and renews; every write of a result is fenced by it.
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True, default="")
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    request_id = models.CharField(max_length=64, blank=True, default="")
    # Receives a signed POST when the job ends (the webhooks layer, on job_finishing).
    callback_url = models.URLField(max_length=2000, blank=True, default="")
    # The workflow the job belongs to and its name there (apps.workflows). A plain UUID, not
    # a foreign key: the jobs app knows nothing of workflows, which follow its signals.
    workflow_id = models.UUIDField(null=True, blank=True)
    workflow_ref = models.CharField(max_length=100, blank=True, default="")
    # The schedule whose firing made the job, and the time that firing was due
    # (apps.schedules). A plain UUID, as workflow_id: the jobs app knows nothing of schedules.
    schedule_id = models.UUIDField(null=True, blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    # A unique kind's key (apps.jobs.lifecycle.unique): sha256 of the kind and its unique_by
    # fields, one job per (owner, unique_key) by the job_unique_key constraint. NULL for every
    # other job. With unique_until NULL (unique_while="active") the trigger job_unique_release
    # drops the key in the UPDATE that finishes the job; with it set ("period") the key stays
    # until then, and a submission after that clears it and takes it.
    unique_key = models.CharField(max_length=64, null=True, blank=True, default=None)
    unique_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # A client's own list, newest first, optionally by status or kind.
            models.Index(fields=["owner", "-created_at"], name="job_owner_created"),
            models.Index(fields=["owner", "status", "-created_at"], name="job_owner_status_created"),
            # By kind, and by kind and status. With (owner, kind, created_at) the planner took
            # it for both filters, reading past every live job of the kind (the newest jobs are
            # the live ones) to find succeeded ones: 14-21 ms at 1M jobs (bench/run scale),
            # 0.3 ms with this one. A kind alone is served by it plus a sort of that kind's
            # rows, or by job_owner_created filtered by kind, whichever the planner finds cheaper.
            models.Index(fields=["owner", "kind", "status", "-created_at"], name="job_owner_kind_status_created"),
            # The admin's filters and date hierarchy.
            models.Index(fields=["status", "-created_at"], name="job_status_created"),
            models.Index(fields=["kind", "-created_at"], name="job_kind_created"),
            models.Index(fields=["-created_at"], name="job_created"),
            # The reconciler's sweeps touch only the few rows that need it.
            models.Index(fields=["run_at"], name="job_due", condition=Q(status__in=["queued", "retrying"])),
            models.Index(fields=["lease_expires_at"], name="job_running_lease", condition=Q(status="running")),
            # The oldest waiting job per queue, for /metrics and the queue-age alert.
            models.Index(
                fields=["queue", "created_at"],
                name="job_queued_by_queue",
                condition=Q(status="queued", run_at__isnull=True),
            ),
            # Jobs waiting in PostgreSQL for the dispatcher (apps.jobs.dispatch), which fills each
            # queue's window in Redis from every client in turn: per queue, each owner's oldest.
            models.Index(
                fields=["queue", "owner", "created_at"],
                name="job_dispatch",
                condition=Q(status="queued", published_at__isnull=True),
            ),
            # The stranded-job sweep (apps.jobs.stranded): per queue, the queued jobs whose
            # message went out longest ago. Rows enter it when they are published and leave it
            # when they are claimed; the claim and the finish write nothing to it.
            models.Index(
                fields=["queue", "published_at"],
                name="job_published_by_queue",
                condition=Q(status="queued", published_at__isnull=False),
            ),
            # A workflow's jobs; partial, so a job outside any workflow costs no index write.
            models.Index(fields=["workflow_id"], name="job_workflow", condition=Q(workflow_id__isnull=False)),
        ]
        constraints = [
            # One job per firing of a schedule, whatever beats race or restart: the database
            # refuses a second (schedule, scheduled_for). Partial, so a job outside any
            # schedule costs no index write; it also lists a schedule's jobs.
            models.UniqueConstraint(
                fields=["schedule_id", "scheduled_for"],
                name="job_schedule_firing",
                condition=Q(schedule_id__isnull=False),
            ),
            # One job per client and unique key (apps.jobs.lifecycle.unique). Partial, so a job
            # of a kind without uniqueness costs no index write.
            models.UniqueConstraint(
                fields=["owner", "unique_key"], name="job_unique_key", condition=Q(unique_key__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class JobAttempt(models.Model):
    """One run of a job: when, on which worker, how long, and how it ended."""

    class Outcome(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"  # a retryable error
        PERMANENT = "permanent"  # an error that skips retries
        LOST = "lost"  # the worker died or its lease expired
        CANCELLED = "cancelled"
        REVOKED = "revoked"  # an operator revoked its Celery task with terminate (Flower, `celery control revoke`)

    # Served by the unique (job, number) constraint; a second index would cost every finish.
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempt_history", db_index=False)
    number = models.PositiveIntegerField()
    worker = models.CharField(max_length=255, blank=True, default="")
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error_type = models.CharField(max_length=200, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    # When this attempt failed with a retry left: when the next attempt may start.
    retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="attempt_job_number")]
        indexes = [
            # The admin dashboard's attempts per minute over the last hour (apps.ops.selectors):
            # the rows finished lately, and, as NULL, the ones still running. One index for
            # both series, where started_at and finished_at indexes would cost every attempt two.
            models.Index(fields=["finished_at"], name="attempt_finished"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.job_id}: {self.outcome}"


class JobStep(models.Model):
    """A step of a handler whose effect already happened (a charge made, an email sent), so a
    retried attempt returns the recorded result instead of doing it again."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=200)
    result = models.JSONField(null=True, blank=True)
    attempt = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="step_job_name")]

    def __str__(self) -> str:
        return f"step {self.name} of {self.job_id}"


class IdempotencyKey(models.Model):
    """A client's Idempotency-Key, kept 24 hours. The unique constraint, not a check before
    the insert, is what makes many concurrent requests with one key create one job."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="+")
    status_code = models.PositiveSmallIntegerField(default=202)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["owner", "key"], name="idempotency_owner_key")]
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]

    def __str__(self) -> str:
        return f"{self.key} -> {self.job_id}"


class BulkOperation(models.Model):
    """An admin action over many jobs or dead letters ("everything matching this filter"),
    run in the background by a worker, with its progress kept here."""

    class Action(models.TextChoices):
        RETRY = "retry"
        CANCEL = "cancel"
        REDRIVE = "redrive"
        DISCARD = "discard"

    class State(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    action = models.CharField(max_length=16, choices=Action.choices)
    target = models.CharField(max_length=16, choices=[("jobs", "jobs"), ("dead_letters", "dead letters")])
    # The admin changelist's query string, re-applied in the worker through the same ModelAdmin.
    filters = models.TextField(blank=True, default="")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    total = models.PositiveIntegerField(null=True, blank=True)
    processed = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    cursor = models.CharField(max_length=64, blank=True, default="")
    message = models.TextField(blank=True, default="")
    created_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} {self.target} ({self.state})"

    @property
    def percent(self) -> float:
        if not self.total:
            return 100.0 if self.state == self.State.DONE else 0.0
        return round(100.0 * self.processed / self.total, 1)


class Pause(models.Model):
    """A paused queue or kind (apps.jobs.pauses). Its jobs are accepted and stay `queued` in
    PostgreSQL: the claim's one statement refuses them (so no process's stale view can start
    one), and the publishers leave them off the broker until the row is deleted (resume)."""

    class Target(models.TextChoices):
        QUEUE = "queue"
        KIND = "kind"

    target_type = models.CharField(max_length=8, choices=Target.choices)
    name = models.CharField(max_length=100)
    paused_by = models.CharField(max_length=150, blank=True, default="")
    paused_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["target_type", "name"]
        constraints = [models.UniqueConstraint(fields=["target_type", "name"], name="pause_target_name")]

    def __str__(self) -> str:
        return f"{self.target_type} {self.name} paused"


class JobLogLine(models.Model):
    """A line a handler logged during one attempt (workers.joblog gathers them, at most
    JOB_LOG_MAX_LINES and JOB_LOG_MAX_BYTES per attempt). Deleted with its job, so pruning
    a job prunes its lines."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="log_lines", db_index=False)
    attempt = models.PositiveIntegerField()
    seq = models.PositiveIntegerField()
    at = models.DateTimeField()
    level = models.CharField(max_length=8)
    logger = models.CharField(max_length=200, blank=True, default="")
    message = models.TextField()

    class Meta:
        # A line's place: an attempt's number is new at every claim of the job, and its lines
        # are numbered as logged. The index also serves the foreign key (it starts with job),
        # which so has no index of its own, and reads a job's or an attempt's lines in order.
        constraints = [models.UniqueConstraint(fields=["job", "attempt", "seq"], name="joblog_job_attempt_seq")]

    def __str__(self) -> str:
        return f"{self.job_id} #{self.attempt}.{self.seq} {self.level}"

"""A workflow: jobs that depend on jobs. Its jobs are ordinary jobs (apps.jobs) that carry
the workflow's id and their ref; this app keeps the graph and what the release needs."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.jobs.models import Job


class WorkflowStatus(models.TextChoices):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class OnFailure(models.TextChoices):
    CANCEL_DEPENDENTS = "cancel_dependents"
    CONTINUE = "continue"


class Workflow(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False)
    name = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=16, choices=WorkflowStatus.choices, default=WorkflowStatus.RUNNING)
    on_failure = models.CharField(max_length=20, choices=OnFailure.choices, default=OnFailure.CANCEL_DEPENDENTS)
    callback_url = models.URLField(max_length=2000, blank=True, default="")
    total = models.PositiveIntegerField(default=0)
    # Jobs not yet succeeded, failed or cancelled: kept as a count under the workflow's row
    # lock, so a finish learns whether it was the last without reading the whole workflow.
    unfinished = models.IntegerField(default=0)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="workflow_owner_created"),
            models.Index(fields=["status", "-created_at"], name="workflow_status_created"),
        ]

    def __str__(self) -> str:
        return f"workflow {self.name or self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status != WorkflowStatus.RUNNING


class WorkflowNode(models.Model):
    """One job's place in its workflow: its edges both ways (job ids, as text), and how many
    of its dependencies have not yet finished. Reading the finished job's own node is all a
    release needs: O(its dependents), never O(the workflow)."""

    job = models.OneToOneField(Job, primary_key=True, on_delete=models.CASCADE, related_name="workflow_node")
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="nodes")
    parents = models.JSONField(default=list)
    dependents = models.JSONField(default=list)
    # Dependencies not yet done (succeeded; or, with on_failure=continue, finished at all).
    remaining = models.IntegerField(default=0)
    # The job whose failure or cancel cancelled this one (cancel_dependents): a redrive of
    # that job puts this one back to waiting.
    cancelled_by = models.UUIDField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["cancelled_by"], name="wfnode_cancelled_by", condition=models.Q(cancelled_by__isnull=False)
            )
        ]

    def __str__(self) -> str:
        return f"node {self.job_id} of {self.workflow_id}"

"""What a client sends to start a workflow and what it sees of one. Input and output are
separate serializers; the output is built directly (WorkflowOutput.of) and declared here for
the OpenAPI schema."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import serializers
from rest_framework.request import Request

from apps.jobs.models import JobStatus, Priority
from apps.jobs.serializers import StrictInput
from apps.jobs.serializers.outputs import _timestamp
from apps.workflows.graph import WORKFLOW_MAX_JOBS
from apps.workflows.models import OnFailure, Workflow, WorkflowStatus
from apps.workflows.selectors import WorkflowJob, workflow_counts

REF_MAX_LENGTH = 100


class WorkflowJobInput(StrictInput):
    ref = serializers.CharField(max_length=REF_MAX_LENGTH, help_text="The job's name in this workflow; unique in it.")
    kind = serializers.CharField(max_length=100)
    payload = serializers.JSONField(default=dict)
    depends_on = serializers.ListField(
        child=serializers.CharField(max_length=REF_MAX_LENGTH),
        required=False,
        default=list,
        max_length=WORKFLOW_MAX_JOBS,
        help_text="Refs of jobs of this workflow that must succeed before this one is queued.",
    )
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    max_attempts = serializers.IntegerField(required=False, min_value=1, max_value=100)


class WorkflowSubmitInput(StrictInput):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    jobs = WorkflowJobInput(many=True, allow_empty=False, max_length=WORKFLOW_MAX_JOBS)
    on_failure = serializers.ChoiceField(choices=OnFailure.choices, required=False, default=OnFailure.CANCEL_DEPENDENTS)
    callback_url = serializers.URLField(required=False, allow_blank=True, max_length=2000, default="")


class WorkflowJobOutput(serializers.Serializer):
    ref = serializers.CharField()
    id = serializers.UUIDField()
    kind = serializers.CharField()
    status = serializers.ChoiceField(choices=JobStatus.choices)
    depends_on = serializers.ListField(child=serializers.CharField())


class WorkflowCountsOutput(serializers.Serializer):
    waiting = serializers.IntegerField()
    queued = serializers.IntegerField()
    running = serializers.IntegerField()
    retrying = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    total = serializers.IntegerField()


class WorkflowLinksOutput(serializers.Serializer):
    self = serializers.URLField()
    cancel = serializers.URLField(required=False, help_text="Absent once the workflow has finished.")


class WorkflowSummaryOutput(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=WorkflowStatus.choices)
    on_failure = serializers.ChoiceField(choices=OnFailure.choices)
    total = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    links = WorkflowLinksOutput()

    @staticmethod
    def of(workflow: Workflow, *, request: Request | None) -> dict[str, Any]:
        workflow_id = str(workflow.id)
        links = {"self": _url(request, "workflow-detail", workflow_id)}
        if not workflow.is_terminal:
            links["cancel"] = _url(request, "workflow-cancel", workflow_id)
        return {
            "id": workflow_id,
            "name": workflow.name,
            "status": str(workflow.status),
            "on_failure": str(workflow.on_failure),
            "total": int(workflow.total),
            "created_at": _timestamp(workflow.created_at),
            "finished_at": _timestamp(workflow.finished_at),
            "links": links,
        }


class WorkflowOutput(WorkflowSummaryOutput):
    counts = WorkflowCountsOutput()
    jobs = WorkflowJobOutput(many=True)

    @staticmethod
    def of(workflow: Workflow, *, request: Request | None, jobs: list[WorkflowJob]) -> dict[str, Any]:  # type: ignore[override]
        data = WorkflowSummaryOutput.of(workflow, request=request)
        data["counts"] = workflow_counts(jobs)
        data["jobs"] = [
            {"ref": j.ref, "id": j.id, "kind": j.kind, "status": j.status, "depends_on": j.depends_on} for j in jobs
        ]
        return data


class WorkflowPageOutput(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = WorkflowSummaryOutput(many=True)


def _url(request: Request | None, view: str, workflow_id: str) -> str:
    path = reverse(view, args=[workflow_id])
    return request.build_absolute_uri(path) if request is not None else path

"""The API's input and output shapes. Input and output are separate serializers, so what a
client sees is never an accident of the model."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.jobs.models import Job, JobAttempt, JobStatus
from apps.jobs.registry import PRIORITIES


class JobSubmitInput(serializers.Serializer):
    kind = serializers.CharField(max_length=100)
    payload = serializers.JSONField(default=dict)
    priority = serializers.ChoiceField(choices=PRIORITIES, required=False)
    run_at = serializers.DateTimeField(required=False, allow_null=True)
    max_attempts = serializers.IntegerField(required=False, min_value=1, max_value=100)
    callback_url = serializers.URLField(required=False, allow_blank=True, max_length=2000)


class JobListFilters(serializers.Serializer):
    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)
    kind = serializers.CharField(max_length=100, required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class ProgressOutput(serializers.Serializer):
    percent = serializers.FloatField(allow_null=True)
    message = serializers.CharField()


class ErrorOutput(serializers.Serializer):
    type = serializers.CharField()
    message = serializers.CharField()


class LinksOutput(serializers.Serializer):
    self = serializers.URLField()
    cancel = serializers.URLField()


class JobOutput(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "priority",
            "attempts",
            "max_attempts",
            "progress",
            "result",
            "error",
            "payload",
            "run_at",
            "created_at",
            "started_at",
            "finished_at",
            "links",
        ]
        read_only_fields = fields

    @extend_schema_field(ProgressOutput)
    def get_progress(self, job: Job) -> dict[str, Any]:
        return {"percent": job.progress_percent, "message": job.progress_message}

    @extend_schema_field(ErrorOutput(allow_null=True))
    def get_error(self, job: Job) -> dict[str, str] | None:
        if not job.error_type:
            return None
        return {"type": job.error_type, "message": job.error_message}

    @extend_schema_field(LinksOutput)
    def get_links(self, job: Job) -> dict[str, str]:
        request = self.context.get("request")
        paths = {"self": reverse("job-detail", args=[job.id]), "cancel": reverse("job-cancel", args=[job.id])}
        if request is None:
            return paths
        return {name: request.build_absolute_uri(path) for name, path in paths.items()}


class AttemptOutput(serializers.ModelSerializer):
    class Meta:
        model = JobAttempt
        fields = [
            "number",
            "outcome",
            "worker",
            "started_at",
            "finished_at",
            "duration_ms",
            "error_type",
            "error_message",
            "retry_at",
        ]
        read_only_fields = fields


class JobDetailOutput(JobOutput):
    """One job, with the history of its attempts (when, which worker, how long, the error)."""

    history = AttemptOutput(source="attempt_history", many=True, read_only=True)

    class Meta(JobOutput.Meta):
        fields = [*JobOutput.Meta.fields, "history"]
        read_only_fields = fields

"""The API's input and output shapes. Input and output are separate serializers, so what a
client sees is never an accident of the model."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings

from apps.jobs.models import Job, JobAttempt, JobStatus, Priority
from apps.jobs.registry import registry

# The most jobs one POST /api/v1/jobs/batch may carry.
BATCH_MAX_JOBS = 1000
_KIND_MAX_LENGTH = 100


class JobSubmitInput(serializers.Serializer):
    kind = serializers.CharField(max_length=_KIND_MAX_LENGTH)
    payload = serializers.JSONField(default=dict)
    # The model's choices, so the OpenAPI schema has one PriorityEnum, not two.
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    run_at = serializers.DateTimeField(required=False, allow_null=True)
    max_attempts = serializers.IntegerField(required=False, min_value=1, max_value=100)
    callback_url = serializers.URLField(required=False, allow_blank=True, max_length=2000)

    @staticmethod
    def simple_job(data: Any) -> dict[str, Any] | None:
        """DRF's validated data for a job that is only a registered kind and an object
        payload (the common shape, on every submit); None for anything else, which DRF
        validates. A registered kind's name passes CharField's checks unchanged (trimmed,
        not blank, at most 100 characters, no NUL), and a parsed JSON object passes
        JSONField's. tests/unit/test_batch.py holds the result equal to DRF's."""
        if type(data) is not dict or not data.keys() <= _SIMPLE_JOB_KEYS:
            return None
        kind, payload = data.get("kind"), data.get("payload", _NO_PAYLOAD)
        if type(kind) is not str or kind not in registry or len(kind) > _KIND_MAX_LENGTH or kind != kind.strip():
            return None
        if payload is _NO_PAYLOAD:
            payload = {}  # the field's default
        elif type(payload) is not dict:
            return None
        return {"kind": kind, "payload": payload}


class JobBatchSubmitInput(serializers.Serializer):
    jobs = JobSubmitInput(many=True, allow_empty=False, max_length=BATCH_MAX_JOBS)

    @staticmethod
    def simple_jobs(data: Any) -> list[dict[str, Any]] | None:
        """The validated jobs of a batch whose every job is simple (JobSubmitInput.simple_job);
        None for any other batch, which DRF validates. DRF runs six fields' validation for
        each of a batch's 1,000 jobs, about a quarter of its time."""
        jobs = data.get("jobs") if isinstance(data, dict) else None
        if not isinstance(jobs, list) or not 0 < len(jobs) <= BATCH_MAX_JOBS:
            return None
        validated = []
        for job in jobs:
            simple = JobSubmitInput.simple_job(job)
            if simple is None:
                return None
            validated.append(simple)
        return validated


_SIMPLE_JOB_KEYS = frozenset({"kind", "payload"})
_NO_PAYLOAD = object()


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


_LINK_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"

# DRF's own formatting (settings' DATETIME_FORMAT, the current time zone, "Z" for UTC);
# it needs no binding, so one instance serves every job.
_DATETIME = serializers.DateTimeField()


def _timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None or api_settings.DATETIME_FORMAT != ISO_8601:
        return _DATETIME.to_representation(value)
    # What DRF does for an aware value in ISO 8601 (enforce_timezone, then isoformat), a
    # list page's 200 timestamps without its per-call settings and time zone look-ups.
    text = value.astimezone(timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


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

    # The columns to_representation reads: a list loads only these (apis.JobListCreateApi),
    # never a traceback. tests/unit/test_api_jobs.py pins a list page at one query, so a
    # column added below and missed here shows up there as a query per job.
    COLUMNS = (
        "id",
        "kind",
        "status",
        "priority",
        "attempts",
        "max_attempts",
        "progress_percent",
        "progress_message",
        "result",
        "error_type",
        "error_message",
        "payload",
        "run_at",
        "created_at",
        "started_at",
        "finished_at",
    )

    def to_representation(self, job: Job) -> dict[str, Any]:
        # Every submit, poll and list page answers with this, and a batch with 1,000 of
        # them: DRF's generic path (binding fifteen fields, then get_attribute and
        # to_representation on each) is about a fifth of a batch's time. The same values,
        # built directly; tests/unit/test_serializers.py holds it equal to DRF's own output
        # (JobOutput.drf_representation) for jobs in every state.
        return {
            "id": str(job.id),
            "kind": job.kind,
            "status": str(job.status),
            "priority": str(job.priority),
            "attempts": int(job.attempts),
            "max_attempts": int(job.max_attempts),
            "progress": self.get_progress(job),
            "result": job.result,
            "error": self.get_error(job),
            "payload": job.payload,
            "run_at": _timestamp(job.run_at),
            "created_at": _timestamp(job.created_at),
            "started_at": _timestamp(job.started_at),
            "finished_at": _timestamp(job.finished_at),
            "links": self.get_links(job),
        }

    def drf_representation(self, job: Job) -> dict[str, Any]:
        """DRF's generic output for the declared fields: what to_representation must equal."""
        return super().to_representation(job)

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
        # Resolved once per serializer (a batch answer has 1,000 jobs), then filled in per job.
        templates = self.context.get("_link_templates")
        if templates is None:
            request = self.context.get("request")
            templates = {}
            for name, view in (("self", "job-detail"), ("cancel", "job-cancel")):
                path = reverse(view, args=[_LINK_PLACEHOLDER])
                templates[name] = request.build_absolute_uri(path) if request is not None else path
            self.context["_link_templates"] = templates
        job_id = str(job.id)
        return {name: template.replace(_LINK_PLACEHOLDER, job_id) for name, template in templates.items()}


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

    def to_representation(self, attempt: JobAttempt) -> dict[str, Any]:
        # Every poll lists its job's attempts; ModelSerializer would derive these nine
        # fields from the model again for each poll (a third of its time). Held equal to
        # DRF's output by tests/unit/test_serializers.py.
        return {
            "number": int(attempt.number),
            "outcome": str(attempt.outcome),
            "worker": attempt.worker,
            "started_at": _timestamp(attempt.started_at),
            "finished_at": _timestamp(attempt.finished_at),
            "duration_ms": None if attempt.duration_ms is None else int(attempt.duration_ms),
            "error_type": attempt.error_type,
            "error_message": attempt.error_message,
            "retry_at": _timestamp(attempt.retry_at),
        }

    def drf_representation(self, attempt: JobAttempt) -> dict[str, Any]:
        """DRF's generic output for the declared fields: what to_representation must equal."""
        return super().to_representation(attempt)


class JobDetailOutput(JobOutput):
    """One job, with the history of its attempts (when, which worker, how long, the error)."""

    history = AttemptOutput(source="attempt_history", many=True, read_only=True)

    class Meta(JobOutput.Meta):
        fields = [*JobOutput.Meta.fields, "history"]
        read_only_fields = fields

    def to_representation(self, job: Job) -> dict[str, Any]:
        data = super().to_representation(job)
        data["history"] = AttemptOutput(job.attempt_history, many=True, context=self.context).data
        return data


class JobBatchOutput(serializers.Serializer):
    jobs = JobOutput(many=True)


class JobPageOutput(serializers.Serializer):
    """A page of the cursor-paginated list."""

    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = JobOutput(many=True)


class KindRetryOutput(serializers.Serializer):
    base_seconds = serializers.FloatField()
    max_seconds = serializers.FloatField()
    backoff = serializers.CharField()


class KindOutput(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    input_schema = serializers.JSONField(help_text="The JSON Schema (2020-12) a payload of this kind must fit.")
    priority = serializers.ChoiceField(choices=Priority.choices)
    queue = serializers.CharField()
    max_attempts = serializers.IntegerField()
    soft_time_limit = serializers.FloatField()
    time_limit = serializers.FloatField()
    rate_limit = serializers.CharField(allow_null=True)
    concurrency = serializers.IntegerField(allow_null=True)
    retry = KindRetryOutput()


class KindListOutput(serializers.Serializer):
    kinds = KindOutput(many=True)


# --- the error body every endpoint answers with (apps.core.errors) -----------------------


class ErrorDetailOutput(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, for programs to match on.")
    message = serializers.CharField(help_text="For a person to act on.")
    details = serializers.JSONField(required=False, help_text="What exactly was wrong, when there is more to say.")


class ErrorResponse(serializers.Serializer):
    error = ErrorDetailOutput()

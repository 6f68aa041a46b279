"""What a client sees of a job and of the kinds, built directly on the hot paths and held
equal to DRF's own output (tests/unit/jobs/test_serializers.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings

from apps.core.errors import InvalidInput
from apps.jobs.models import TERMINAL_STATUSES, Job, JobAttempt, JobStatus
from apps.jobs.selectors import result_file_names


class ProgressOutput(serializers.Serializer):
    percent = serializers.FloatField(allow_null=True)
    message = serializers.CharField()


class ErrorOutput(serializers.Serializer):
    type = serializers.CharField()
    message = serializers.CharField()


class JobWorkflowOutput(serializers.Serializer):
    id = serializers.UUIDField()
    ref = serializers.CharField()


class JobFileOutput(serializers.Serializer):
    name = serializers.CharField(help_text="A `file` name the job's result lists.")
    url = serializers.URLField(help_text="Where its owner downloads it (GET /api/v1/jobs/{id}/files/{name}).")


class LinksOutput(serializers.Serializer):
    self = serializers.URLField()
    cancel = serializers.URLField(required=False, help_text="Absent once the job has finished.")


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


# A job's fields that may be large: a list leaves them out unless asked for (?include=).
LARGE_FIELDS = ("payload", "result")
# The most characters of a payload's or result's JSON text a list row carries when asked
# for it, and a single job: a larger one comes as null, named in the job's `truncated`. At
# most 200 rows x 2 fields x 16 KiB, a page stays near 6 MB; one job, near 2 MB.
LIST_FIELD_MAX_CHARS = 16 * 1024
JOB_FIELD_MAX_CHARS = 1024 * 1024
_TRUNCATED_HELP = (
    "Present only when a large field was cut: the names of those (payload, result) that are "
    "null here because their JSON text is over the bound."
)


class JobOutput(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()
    workflow = serializers.SerializerMethodField()
    schedule = serializers.SerializerMethodField()
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
            "cancel_requested_at",
            "workflow",
            "schedule",
            "scheduled_for",
            "links",
        ]
        read_only_fields = fields
        # When a cancel was asked: a running job stays "running" until its handler stops,
        # so this is what says a cancel is pending (null when none was asked).
        extra_kwargs = {
            "cancel_requested_at": {"help_text": "When a cancel was asked; null if never."},
            "scheduled_for": {"help_text": "The time the schedule's firing that made the job was due; null otherwise."},
        }

    # The columns to_representation reads: a list loads only these (apis.JobListCreateApi),
    # never a traceback. tests/unit/jobs/test_apis.py pins a list page at one query, so a
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
        "cancel_requested_at",
        "workflow_id",
        "workflow_ref",
        "schedule_id",
        "scheduled_for",
    )

    def to_representation(self, job: Job) -> dict[str, Any]:
        # Every submit, poll and list page answers with this, and a batch with 1,000 of
        # them: DRF's generic path (binding fifteen fields, then get_attribute and
        # to_representation on each) is about a fifth of a batch's time. The same values,
        # built directly; tests/unit/jobs/test_serializers.py holds it equal to DRF's own output
        # (JobOutput.drf_representation) for jobs in every state.
        return self._represent(job, LARGE_FIELDS)

    def _represent(self, job: Job, large: tuple[str, ...]) -> dict[str, Any]:
        """The job with those of its large fields (payload, result) named in `large`. A job
        read with them bounded (selectors.with_bounded_json) shows an oversized one as null
        and names it in `truncated`."""
        values: dict[str, Any] = {}
        truncated = []
        for name in large:
            if hasattr(job, f"{name}_over"):
                values[name] = getattr(job, f"{name}_bounded")
                if getattr(job, f"{name}_over"):
                    truncated.append(name)
            else:
                values[name] = getattr(job, name)
        data = {
            "id": str(job.id),
            "kind": job.kind,
            "status": str(job.status),
            "priority": str(job.priority),
            "attempts": int(job.attempts),
            "max_attempts": int(job.max_attempts),
            "progress": self.get_progress(job),
            "result": values.get("result"),
            "error": self.get_error(job),
            "payload": values.get("payload"),
            "run_at": _timestamp(job.run_at),
            "created_at": _timestamp(job.created_at),
            "started_at": _timestamp(job.started_at),
            "finished_at": _timestamp(job.finished_at),
            "cancel_requested_at": _timestamp(job.cancel_requested_at),
            "workflow": self.get_workflow(job),
            "schedule": None if job.schedule_id is None else str(job.schedule_id),
            "scheduled_for": _timestamp(job.scheduled_for),
            "links": self.get_links(job),
        }
        for name in LARGE_FIELDS:
            if name not in values:
                del data[name]
        if truncated:
            data["truncated"] = truncated
        return data

    def drf_representation(self, job: Job) -> dict[str, Any]:
        """DRF's generic output for the declared fields: what to_representation must equal."""
        return super().to_representation(job)

    @extend_schema_field(ProgressOutput)
    def get_progress(self, job: Job) -> dict[str, Any]:
        # Handlers report fractions as they compute them (51.28484245000209); two decimals
        # are all a progress bar can show.
        percent = job.progress_percent
        return {"percent": None if percent is None else round(percent, 2), "message": job.progress_message}

    @extend_schema_field(ErrorOutput(allow_null=True))
    def get_error(self, job: Job) -> dict[str, str] | None:
        if not job.error_type:
            return None
        return {"type": job.error_type, "message": job.error_message}

    @extend_schema_field(JobWorkflowOutput(allow_null=True))
    def get_workflow(self, job: Job) -> dict[str, str] | None:
        # The workflow the job belongs to and its ref there (apps.workflows); null otherwise.
        if job.workflow_id is None:
            return None
        return {"id": str(job.workflow_id), "ref": job.workflow_ref}

    @extend_schema_field(serializers.UUIDField(allow_null=True, help_text="The schedule that made the job, if any."))
    def get_schedule(self, job: Job) -> str | None:
        # The schedule whose firing made the job (apps.schedules); null otherwise.
        return None if job.schedule_id is None else str(job.schedule_id)

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
        links = {"self": templates["self"].replace(_LINK_PLACEHOLDER, job_id)}
        if job.status not in TERMINAL_STATUSES:  # a finished job offers no cancel (it answers 409)
            links["cancel"] = templates["cancel"].replace(_LINK_PLACEHOLDER, job_id)
        return links


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
        # DRF's output by tests/unit/jobs/test_serializers.py.
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
    """One job, with the files its result lists and the history of its attempts (when, which
    worker, how long, the error)."""

    files = serializers.SerializerMethodField()
    history = AttemptOutput(source="attempt_history", many=True, read_only=True)
    truncated = serializers.ListField(child=serializers.CharField(), required=False, help_text=_TRUNCATED_HELP)

    class Meta(JobOutput.Meta):
        fields = [*JobOutput.Meta.fields, "files", "truncated", "history"]
        read_only_fields = [f for f in fields if f != "truncated"]

    def to_representation(self, job: Job) -> dict[str, Any]:
        data = super().to_representation(job)
        data["files"] = self.get_files(job)
        data["history"] = AttemptOutput(job.attempt_history, many=True, context=self.context).data
        return _with_running_attempt(job, data)

    @extend_schema_field(JobFileOutput(many=True))
    def get_files(self, job: Job) -> list[dict[str, str]]:
        # A job read with its result bounded (selectors.job_get's max_json_chars) has the
        # bounded text instead; one too large to show lists no files either.
        result = job.result_bounded if hasattr(job, "result_over") else job.result
        request = self.context.get("request")
        files = []
        for name in result_file_names(result):
            path = reverse("job-file", args=[job.id, name])
            files.append({"name": name, "url": request.build_absolute_uri(path) if request is not None else path})
        return files

    def drf_representation(self, job: Job) -> dict[str, Any]:
        return _with_running_attempt(job, super().drf_representation(job))


def _with_running_attempt(job: Job, data: dict[str, Any]) -> dict[str, Any]:
    """The history with the attempt under way: its row is written when it ends, so a running
    job showed "attempts": 1 and an empty history."""
    numbers = {attempt["number"] for attempt in data["history"]}
    if job.status == JobStatus.RUNNING and job.attempts and job.attempts not in numbers:
        data["history"] = [
            *data["history"],
            {
                "number": int(job.attempts),
                "outcome": str(JobAttempt.Outcome.RUNNING),
                "worker": job.worker,
                "started_at": _timestamp(job.started_at),
                "finished_at": None,
                "duration_ms": None,
                "error_type": "",
                "error_message": "",
                "retry_at": None,
            },
        ]
    return data


class JobListItemOutput(JobOutput):
    """A list row: payload and result only when asked for (context "include"), each bounded
    to LIST_FIELD_MAX_CHARS (the list reads them through selectors.with_bounded_json)."""

    payload = serializers.JSONField(required=False, help_text="Only with ?include=payload.")
    result = serializers.JSONField(required=False, allow_null=True, help_text="Only with ?include=result.")
    truncated = serializers.ListField(child=serializers.CharField(), required=False, help_text=_TRUNCATED_HELP)

    class Meta(JobOutput.Meta):
        fields = [*JobOutput.Meta.fields, "truncated"]
        read_only_fields = [f for f in fields if f not in (*LARGE_FIELDS, "truncated")]

    # The columns a row reads besides the bounded large fields.
    COLUMNS = tuple(c for c in JobOutput.COLUMNS if c not in LARGE_FIELDS)

    def to_representation(self, job: Job) -> dict[str, Any]:
        include = self.context.get("include", ())
        return self._represent(job, tuple(name for name in LARGE_FIELDS if name in include))


def list_include(raw: str | None) -> frozenset[str]:
    """?include=payload,result: the large fields a list row should carry."""
    names = frozenset(part.strip() for part in (raw or "").split(",") if part.strip())
    unknown = sorted(names - set(LARGE_FIELDS))
    if unknown:
        raise InvalidInput(
            f"include may name {', '.join(LARGE_FIELDS)}, comma-separated; got {', '.join(unknown)[:100]!r}.",
            code="invalid_include",
            details={"allowed": list(LARGE_FIELDS)},
        )
    return names


class JobPageOutput(serializers.Serializer):
    """A page of the cursor-paginated list."""

    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = JobListItemOutput(many=True)

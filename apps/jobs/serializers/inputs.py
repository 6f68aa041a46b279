"""What a client sends: a job to submit, a batch of them, the list's filters. Fields a
serializer does not declare are refused, by name (StrictInput)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.jobs.models import JobStatus, Priority
from apps.jobs.registry import registry

# The most jobs one POST /api/v1/jobs/batch may carry.
BATCH_MAX_JOBS = 1000
_KIND_MAX_LENGTH = 100


class StrictInput(serializers.Serializer):
    """Refuses fields it does not declare, naming each. DRF drops them silently, so a typo
    (`"priorty": "high"`) ran the job at the default priority with a 202; like Stripe's
    "Received unknown parameter", the answer is a 400 naming the field."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = list(self.fields)
            unknown = [name for name in data if name not in self.fields]
            if unknown:
                raise serializers.ValidationError({name: [_unknown_field(str(name), known)] for name in unknown})
        return super().to_internal_value(data)


def _unknown_field(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"Unknown field.{hint} The fields are: {', '.join(known)}."


class JobSubmitInput(StrictInput):
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
        JSONField's. Any other key (an unknown one included, which StrictInput refuses)
        goes to DRF. tests/unit/jobs/test_batch.py holds the result equal to DRF's."""
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


class JobBatchSubmitInput(StrictInput):
    jobs = JobSubmitInput(many=True, allow_empty=False, max_length=BATCH_MAX_JOBS)

    @staticmethod
    def simple_jobs(data: Any) -> list[dict[str, Any]] | None:
        """The validated jobs of a batch whose every job is simple (JobSubmitInput.simple_job);
        None for any other batch, which DRF validates. DRF runs six fields' validation for
        each of a batch's 1,000 jobs, about a quarter of its time."""
        if type(data) is not dict or data.keys() != {"jobs"}:
            return None  # an unknown field beside "jobs": DRF names it
        jobs = data["jobs"]
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


@extend_schema_field(OpenApiTypes.STR)
class StatusListField(serializers.Field):
    """One status or several, comma-separated (`status=succeeded,failed`)."""

    default_error_messages = {"invalid_choice": "{value!r} is not a status; the statuses are: {choices}."}

    def to_internal_value(self, data: Any) -> list[str]:
        names = [part.strip() for part in str(data).split(",") if part.strip()]
        for name in names:
            if name not in JobStatus.values:
                self.fail("invalid_choice", value=name[:50], choices=", ".join(JobStatus.values))
        return list(dict.fromkeys(names))

    def to_representation(self, value: Any) -> Any:
        return ",".join(value)


class JobListFilters(serializers.Serializer):
    status = StatusListField(
        required=False,
        help_text=f"One status or several, comma-separated: {', '.join(JobStatus.values)}.",
    )
    kind = serializers.CharField(max_length=100, required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    workflow = serializers.UUIDField(required=False, help_text="Only the jobs of this workflow (its id).")
    schedule = serializers.UUIDField(required=False, help_text="Only the jobs this schedule made (its id).")

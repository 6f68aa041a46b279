"""A batch's answer: each job as a single submission shows it, plus whether it was deduplicated."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.jobs.lifecycle.unique import job_deduplicated
from apps.jobs.models import Job
from apps.jobs.serializers.outputs import JobOutput


class JobBatchItemOutput(JobOutput):
    deduplicated = serializers.SerializerMethodField()

    class Meta(JobOutput.Meta):
        fields = [*JobOutput.Meta.fields, "deduplicated"]
        read_only_fields = fields

    def to_representation(self, job: Job) -> dict[str, Any]:
        data = super().to_representation(job)
        data["deduplicated"] = job_deduplicated(job)
        return data

    @extend_schema_field(
        serializers.BooleanField(
            help_text=(
                "True when the item's kind is unique and another job held its key: this is that job, and no "
                "job was made for the item (docs/kinds.md)."
            )
        )
    )
    def get_deduplicated(self, job: Job) -> bool:
        return job_deduplicated(job)


class JobBatchOutput(serializers.Serializer):
    jobs = JobBatchItemOutput(many=True)

"""What a client sees of the kinds (GET /api/v1/kinds): the catalogue of job kinds."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.jobs.models import Priority


class KindRetryOutput(serializers.Serializer):
    base_seconds = serializers.FloatField()
    max_seconds = serializers.FloatField()
    backoff = serializers.CharField()


class KindUniqueOutput(serializers.Serializer):
    by = serializers.ListField(child=serializers.CharField(), help_text="The payload fields that make the key.")
    for_seconds = serializers.FloatField(allow_null=True)
    # "active": held until the job finishes; "period": for_seconds from its creation.
    while_ = serializers.ChoiceField(choices=["active", "period"])
    debounce_seconds = serializers.FloatField(allow_null=True)

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["while"] = fields.pop("while_")  # a keyword in Python, a plain key in JSON
        return fields


class KindOutput(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    input_schema = serializers.JSONField(help_text="The JSON Schema (2020-12) a payload of this kind must fit.")
    priority = serializers.ChoiceField(choices=Priority.choices)
    queue = serializers.CharField()
    max_attempts = serializers.IntegerField()
    soft_time_limit = serializers.FloatField()
    time_limit = serializers.FloatField()
    io_bound = serializers.BooleanField(help_text="Runs on worker-io's threads, on the io_<priority> queues.")
    rate_limit = serializers.CharField(allow_null=True)
    concurrency = serializers.IntegerField(allow_null=True)
    limit_per = serializers.CharField(allow_null=True, help_text='Limits counted per "owner" or "payload.<field>".')
    unique = KindUniqueOutput(allow_null=True, help_text="Null unless the kind's jobs are unique (docs/kinds.md).")
    retry = KindRetryOutput()


class KindListOutput(serializers.Serializer):
    kinds = KindOutput(many=True)

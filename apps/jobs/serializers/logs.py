"""A job's log lines (GET /api/v1/jobs/{id}/logs): the filter a client sends and the page it gets."""

from __future__ import annotations

from rest_framework import serializers

from apps.jobs.models import JobLogLine


class JobLogFilters(serializers.Serializer):
    attempt = serializers.IntegerField(
        required=False, min_value=1, max_value=2**31 - 1, help_text="Only this attempt's lines (its number, from 1)."
    )


class JobLogLineOutput(serializers.ModelSerializer):
    attempt = serializers.IntegerField(help_text="The number of the attempt that logged it.")
    seq = serializers.IntegerField(help_text="Its place in its attempt's log, from 1.")
    at = serializers.DateTimeField(help_text="When it was logged.")
    level = serializers.CharField(help_text="DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    logger = serializers.CharField(help_text="The logger's name (the kind's, for ctx.log).")
    message = serializers.CharField(help_text="The message, with its traceback when one was logged.")

    class Meta:
        model = JobLogLine
        fields = ["attempt", "seq", "at", "level", "logger", "message"]
        read_only_fields = fields


class JobLogPageOutput(serializers.Serializer):
    """A page of a job's log lines, oldest first (by attempt, then as logged)."""

    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = JobLogLineOutput(many=True)

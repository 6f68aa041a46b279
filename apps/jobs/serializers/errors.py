"""The error body every endpoint answers with (apps.core.errors), for the OpenAPI schema."""

from __future__ import annotations

from rest_framework import serializers


class ErrorDetailOutput(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, for programs to match on.")
    message = serializers.CharField(help_text="For a person to act on.")
    details = serializers.JSONField(required=False, help_text="What exactly was wrong, when there is more to say.")


class ErrorResponse(serializers.Serializer):
    error = ErrorDetailOutput()

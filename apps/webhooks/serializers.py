from __future__ import annotations

from rest_framework import serializers

from apps.webhooks.models import WebhookSecret


class WebhookSecretOutput(serializers.ModelSerializer):
    class Meta:
        model = WebhookSecret
        fields = ["secret", "created_at", "rotated_at"]
        read_only_fields = fields

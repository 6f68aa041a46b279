from __future__ import annotations

from rest_framework import serializers

from apps.files.models import Upload


class UploadInput(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True, use_url=False)


class UploadOutput(serializers.ModelSerializer):
    class Meta:
        model = Upload
        fields = ["id", "size", "sha256", "content_type", "created_at"]
        read_only_fields = fields

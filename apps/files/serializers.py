from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.files.models import Upload


class UploadInput(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True, use_url=False)


class UploadLinksOutput(serializers.Serializer):
    self = serializers.URLField()
    content = serializers.URLField(help_text="The upload's bytes, for its owner (GET /api/v1/uploads/{id}/content).")


class UploadOutput(serializers.ModelSerializer):
    links = serializers.SerializerMethodField()

    class Meta:
        model = Upload
        fields = ["id", "size", "sha256", "content_type", "created_at", "links"]
        read_only_fields = fields

    @extend_schema_field(UploadLinksOutput)
    def get_links(self, upload: Upload) -> dict[str, str]:
        request = self.context.get("request")
        links = {}
        for name, view in (("self", "upload-detail"), ("content", "upload-content")):
            path = reverse(view, args=[upload.id])
            links[name] = request.build_absolute_uri(path) if request is not None else path
        return links

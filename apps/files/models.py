from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


def upload_path(upload: Upload, filename: str) -> str:
    # Never the client's file name: it is not trusted, and the id is already unique.
    return f"uploads/{upload.created_at:%Y/%m}/{upload.id}"


class Upload(models.Model):
    """A file a client sent, for jobs of kinds that take a file (their payload names its id).
    The bytes live in default_storage; this row says whose they are and what they are."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads")
    file = models.FileField(upload_to=upload_path, max_length=255)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    content_type = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="upload_owner_created")]

    def __str__(self) -> str:
        return f"upload {self.id} ({self.size} bytes)"

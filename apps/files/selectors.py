"""Reads of uploads and of the files jobs made."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError

from apps.core.errors import NotFound
from apps.files.models import Upload


def upload_get(*, owner: AbstractBaseUser | Any, upload_id: object) -> Upload:
    """One of the owner's uploads; someone else's is as absent as one that never existed."""
    owner_id = getattr(owner, "pk", owner)
    try:
        return Upload.objects.get(id=upload_id, owner_id=owner_id)
    except (Upload.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such upload.", code="upload_not_found") from None


def upload_exists(*, owner: AbstractBaseUser | Any, upload_id: object) -> bool:
    """Whether the owner has this upload (one indexed query, no row loaded)."""
    owner_id = getattr(owner, "pk", owner)
    try:
        return Upload.objects.filter(id=upload_id, owner_id=owner_id).exists()
    except (ValueError, TypeError, ValidationError):  # not a UUID: no such upload
        return False


def job_file_path(job_id: object, name: str) -> str:
    """Where a job's file lives in default_storage."""
    return f"jobs/{job_id}/{name}"

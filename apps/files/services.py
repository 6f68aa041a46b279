"""Behaviour on files: storing an upload, and the files a job writes."""

from __future__ import annotations

import hashlib
import re

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from apps.core.errors import ApplicationError, InvalidInput
from apps.files.models import Upload
from apps.files.selectors import job_file_path, upload_exists

_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class PayloadTooLarge(ApplicationError):
    status_code = 413
    code = "body_too_large"


def upload_check_reference(*, owner: AbstractBaseUser, upload_id: object, field: str = "upload_id") -> None:
    """Refuse at submit a payload naming an upload its owner does not have (never sent, or
    someone else's: the same answer for both), instead of a 202 and a job that fails. 400
    `unknown_upload`, naming the field, in the payload-error shape."""
    if not upload_exists(owner=owner, upload_id=upload_id):
        raise InvalidInput(
            f"payload.{field}: upload {upload_id} does not exist (or is not yours). Send the file to "
            "POST /api/v1/uploads first and use the id it answers.",
            code="unknown_upload",
            details=[{"path": field, "message": "no such upload"}],
        )


def upload_create(*, owner: AbstractBaseUser, file: UploadedFile) -> Upload:
    """Keep a client's file: its bytes in default_storage, its size, SHA-256 and declared
    media type in the database. Over UPLOAD_MAX_BYTES it is refused with 413."""
    limit = settings.UPLOAD_MAX_BYTES
    if file.size is not None and file.size > limit:
        raise PayloadTooLarge(
            f"The file is {file.size} bytes; the limit is {limit} bytes.",
            details={"size": file.size, "limit": limit},
        )
    digest = hashlib.sha256()
    size = 0
    for chunk in file.chunks():
        digest.update(chunk)
        size += len(chunk)
    file.seek(0)
    declared = (file.content_type or "").split(";")[0].strip().lower()
    content_type = declared if _MEDIA_TYPE.match(declared) and len(declared) <= 100 else "application/octet-stream"
    upload = Upload(owner=owner, size=size, sha256=digest.hexdigest(), content_type=content_type)
    # Store the bytes first: a row must never point at a file that is not there. A crash in
    # between leaves an orphan file, never a dangling row.
    upload.file.save("upload", file, save=False)
    try:
        with transaction.atomic():
            upload.save()
    except Exception:
        default_storage.delete(upload.file.name)
        raise
    return upload


def job_file_write(*, job_id: str, name: str, data: bytes) -> str:
    """Write (or rewrite: a retried attempt writes the same names) a file of a job; returns
    its storage path."""
    if not _FILE_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid job file name")
    path = job_file_path(job_id, name)
    if default_storage.exists(path):
        default_storage.delete(path)
    saved = default_storage.save(path, ContentFile(data))
    if saved != path:  # a storage that renames rather than overwrites would break the link
        raise RuntimeError(f"storage saved {path} as {saved}")
    return saved

"""Image kinds: thumbnails with Pillow."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from typing import Any

from PIL import Image, UnidentifiedImageError

from apps.core.errors import NotFound
from apps.files import selectors as file_selectors
from apps.files import services as file_services
from apps.jobs.models import Job
from apps.jobs.registry import JobContext, PermanentError, kind

# Decompression bombs: refuse images that would expand past this many pixels in memory.
Image.MAX_IMAGE_PIXELS = 40_000_000

_FORMATS = {"png": ("PNG", "png"), "jpeg": ("JPEG", "jpg"), "webp": ("WEBP", "webp")}


@kind(
    "images.thumbnail",
    schema={
        "type": "object",
        "properties": {
            "image_base64": {"type": "string", "minLength": 1, "maxLength": 1_000_000},
            # The id of a file sent to POST /api/v1/uploads by the job's owner.
            "upload_id": {
                "type": "string",
                "pattern": "^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$",
            },
            "sizes": {
                "type": "array",
                "minItems": 1,
                "maxItems": 8,
                "items": {"type": "integer", "minimum": 8, "maximum": 2048},
            },
            "format": {"enum": list(_FORMATS)},
        },
        "required": ["sizes"],
        # The image comes inline or as an upload: exactly one of the two.
        "oneOf": [{"required": ["image_base64"]}, {"required": ["upload_id"]}],
        "additionalProperties": False,
    },
    max_attempts=3,
    soft_time_limit=60,
    time_limit=90,
)
def thumbnail(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Makes thumbnails of an image, fitting each in a square of the given sizes."""
    raw = _upload_bytes(ctx, payload["upload_id"]) if "upload_id" in payload else _inline_bytes(payload)
    try:
        with Image.open(io.BytesIO(raw)) as source:
            # Pillow itself only refuses past twice MAX_IMAGE_PIXELS; refuse at the limit.
            if source.width * source.height > Image.MAX_IMAGE_PIXELS:
                raise PermanentError(
                    f"the image is {source.width}x{source.height} pixels; the limit is {Image.MAX_IMAGE_PIXELS} pixels"
                )
            source.load()
            image = source.convert("RGBA") if source.mode not in ("RGB", "RGBA") else source.copy()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as exc:
        raise PermanentError(f"the data is not an image Pillow can read: {exc}") from None

    fmt, ext = _FORMATS[payload.get("format", "png")]
    if fmt == "JPEG" and image.mode == "RGBA":
        image = image.convert("RGB")
    thumbnails = []
    sizes = sorted(set(payload["sizes"]), reverse=True)
    for index, size in enumerate(sizes):
        ctx.check_cancelled()
        thumb = image.copy()
        thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        thumb.save(buffer, fmt)
        data = buffer.getvalue()
        name = f"thumbnail-{size}.{ext}"
        # Through default_storage, under jobs/<job id>/; the same name on a retry, rewritten.
        file_services.job_file_write(job_id=ctx.job_id, name=name, data=data)
        thumbnails.append(
            {
                "size": size,
                "width": thumb.width,
                "height": thumb.height,
                "format": fmt,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                # GET /api/v1/jobs/<job id>/files/<file> gives it to the job's owner.
                "file": name,
            }
        )
        ctx.progress(100.0 * (index + 1) / len(sizes), f"made {size}px thumbnail")
    return {"source": {"width": image.width, "height": image.height}, "thumbnails": thumbnails}


def _inline_bytes(payload: dict[str, Any]) -> bytes:
    try:
        return base64.b64decode(payload["image_base64"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PermanentError(f"image_base64 is not valid base64: {exc}") from None


def _upload_bytes(ctx: JobContext, upload_id: str) -> bytes:
    """An upload's bytes, read through default_storage, when it belongs to the job's owner.
    Anyone else's upload is as absent as one that never existed (PermanentError, no retry)."""
    owner_id = Job.objects.filter(id=ctx.job_id).values_list("owner_id", flat=True).first()
    try:
        upload = file_selectors.upload_get(owner=owner_id, upload_id=upload_id)
    except NotFound:
        raise PermanentError(f"upload {upload_id} does not exist (or is not yours)") from None
    try:
        with upload.file.open("rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise PermanentError(f"upload {upload_id}'s file is gone from storage") from None

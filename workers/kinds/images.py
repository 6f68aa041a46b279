"""Image kinds: thumbnails with Pillow."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from pathlib import Path
from typing import Any

from django.conf import settings
from PIL import Image, UnidentifiedImageError

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
            "sizes": {
                "type": "array",
                "minItems": 1,
                "maxItems": 8,
                "items": {"type": "integer", "minimum": 8, "maximum": 2048},
            },
            "format": {"enum": list(_FORMATS)},
        },
        "required": ["image_base64", "sizes"],
        "additionalProperties": False,
    },
    max_attempts=3,
    soft_time_limit=60,
    time_limit=90,
)
def thumbnail(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Makes thumbnails of an image, fitting each in a square of the given sizes."""
    try:
        raw = base64.b64decode(payload["image_base64"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PermanentError(f"image_base64 is not valid base64: {exc}") from None
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
    out_dir = Path(settings.JOB_MEDIA_ROOT) / ctx.job_id
    out_dir.mkdir(parents=True, exist_ok=True)
    thumbnails = []
    sizes = sorted(set(payload["sizes"]), reverse=True)
    for index, size in enumerate(sizes):
        ctx.check_cancelled()
        thumb = image.copy()
        thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        thumb.save(buffer, fmt)
        data = buffer.getvalue()
        path = out_dir / f"thumbnail-{size}.{ext}"
        path.write_bytes(data)  # same name on a retry: rewriting is idempotent
        thumbnails.append(
            {
                "size": size,
                "width": thumb.width,
                "height": thumb.height,
                "format": fmt,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "file": str(path.relative_to(settings.JOB_MEDIA_ROOT)),
            }
        )
        ctx.progress(100.0 * (index + 1) / len(sizes), f"made {size}px thumbnail")
    return {"source": {"width": image.width, "height": image.height}, "thumbnails": thumbnails}

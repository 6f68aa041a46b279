"""Image kinds: thumbnails with Pillow."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from PIL import Image, UnidentifiedImageError

from apps.core.errors import NotFound
from apps.files import selectors as file_selectors
from apps.files import services as file_services
from apps.jobs.models import Job
from apps.jobs.registry import ClientError, JobContext, kind

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
    # Refuses an upload_id that is not the owner's at submit (400), not in the worker; a
    # lambda because the check is defined below the handler.
    check_payload=lambda owner, payload: _check_payload(owner, payload),
)
def thumbnail(ctx: JobContext, payload: dict[str, Any]) -> dict[str, Any]:
    """Makes thumbnails of an image, fitting each in a square of the given sizes."""
    raw = _upload_bytes(ctx, payload["upload_id"]) if "upload_id" in payload else _inline_bytes(payload)
    fmt, ext = _FORMATS[payload.get("format", "png")]
    sizes = sorted(set(payload["sizes"]), reverse=True)
    decoded = _decode(raw, largest=sizes[0], jpeg_output=fmt == "JPEG")
    image = decoded.image
    width, height = decoded.size

    thumbnails = []
    for index, size in enumerate(sizes):
        ctx.check_cancelled()
        fitted = _fit(width, height, size)
        # A resize makes only the small image; Image.thumbnail on a copy would first copy the
        # whole decoded image once per size.
        thumb = image if fitted is None else image.resize(fitted, _RESAMPLE, box=decoded.box, reducing_gap=2.0)
        if fmt == "JPEG" and thumb.mode == "RGBA":
            thumb = thumb.convert("RGB")
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
    return {"source": {"width": width, "height": height}, "thumbnails": thumbnails}


_RESAMPLE = Image.Resampling.LANCZOS


@dataclass(frozen=True)
class _Decoded:
    image: Image.Image
    # The source's own size, which a JPEG decoded at a reduced scale no longer has.
    size: tuple[int, int]
    # The region of `image` that holds the source, for a reduced JPEG (see Image.draft).
    box: tuple[float, float, float, float] | None


def bytes_per_pixel(mode: str) -> int:
    """What Pillow keeps in memory per pixel of a mode: one byte for 1, L and P, two for the
    16-bit modes, four for the rest (Pillow stores RGB, LA, CMYK... in 32 bits, like RGBA)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def _decode(raw: bytes, *, largest: int, jpeg_output: bool) -> _Decoded:
    """The image, decoded only once its memory fits the budget (IMAGE_MAX_DECODE_BYTES): the
    pixel limit alone let a 154 KB PNG of 6000x6600 pixels take a worker to 773 MB. A JPEG is
    decoded at 1/2, 1/4 or 1/8 scale when that still covers the largest thumbnail twice over
    (what Image.thumbnail asks for); other formats cannot be reduced while decoding, so past
    the budget they are refused before a byte of pixels is decoded."""
    try:
        source = Image.open(io.BytesIO(raw))
        width, height = source.size
        # Pillow itself only refuses past twice MAX_IMAGE_PIXELS; refuse at the limit.
        if width * height > Image.MAX_IMAGE_PIXELS:
            raise ClientError(f"The image is {width}x{height} pixels; the limit is {Image.MAX_IMAGE_PIXELS} pixels.")
        box = None
        if source.format == "JPEG":
            drafted = source.draft("RGB", (2 * largest, 2 * largest))
            if drafted is not None and source.size != (width, height):
                box = drafted[1]
        target = source.mode if source.mode in ("RGB", "RGBA") else ("RGB" if jpeg_output else "RGBA")
        pixels = source.width * source.height
        # The decoded image, plus its conversion to RGB(A) when the mode needs one.
        needed = pixels * bytes_per_pixel(source.mode) + (pixels * 4 if target != source.mode else 0)
        budget = settings.IMAGE_MAX_DECODE_BYTES
        if needed > budget:
            raise ClientError(
                f"The image is {width}x{height} pixels ({source.mode}); decoding it would take "
                f"{_mib(needed)} of memory, over the limit of {_mib(budget)}. Send a smaller image"
                + (" or a JPEG." if source.format != "JPEG" else ".")
            )
        source.load()
        image = source if target == source.mode else source.convert(target)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError):
        # Pillow's message names the BytesIO object (`<_io.BytesIO object at 0x...>`): say
        # what the client can act on instead.
        raise ClientError("The data is not an image Pillow can read (PNG, JPEG, WebP, GIF...).") from None
    return _Decoded(image=image, size=(width, height), box=box)


def _fit(width: int, height: int, size: int) -> tuple[int, int] | None:
    """The size Image.thumbnail gives an image fitted in a size x size square (same rounding,
    so results match it), or None when it fits already."""

    def round_aspect(number: float, key: Callable[[int], float]) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    if size >= width and size >= height:
        return None
    aspect = width / height
    x = y = size
    if x / y >= aspect:
        x = round_aspect(y * aspect, key=lambda n: abs(aspect - n / y))
    else:
        y = round_aspect(x / aspect, key=lambda n: 0 if n == 0 else abs(aspect - x / n))
    return x, y


def _mib(count: int) -> str:
    return f"{count / 2**20:.0f} MiB"


def _check_payload(owner: AbstractBaseUser, payload: dict[str, Any]) -> None:
    """At submit: an upload_id must name one of the owner's uploads (400 unknown_upload)."""
    if "upload_id" in payload:
        file_services.upload_check_reference(owner=owner, upload_id=payload["upload_id"])


def _inline_bytes(payload: dict[str, Any]) -> bytes:
    try:
        return base64.b64decode(payload["image_base64"], validate=True)
    except (binascii.Error, ValueError):
        raise ClientError("image_base64 is not valid base64.") from None


def _upload_bytes(ctx: JobContext, upload_id: str) -> bytes:
    """An upload's bytes, read through default_storage, when it belongs to the job's owner.
    Anyone else's upload is as absent as one that never existed (ClientError, no retry).
    Submit checks this too (_check_payload); here it catches an upload deleted since."""
    owner_id = Job.objects.filter(id=ctx.job_id).values_list("owner_id", flat=True).first()
    try:
        upload = file_selectors.upload_get(owner=owner_id, upload_id=upload_id)
    except NotFound:
        raise ClientError(f"Upload {upload_id} does not exist (or is not yours).") from None
    try:
        with upload.file.open("rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise ClientError(f"Upload {upload_id}'s file is gone; upload it again.") from None

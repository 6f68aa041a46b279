"""images.thumbnail budgets the memory of a decode before it decodes (issue 14, item 5): a
154 KB PNG of 6000x6600 pixels, under the pixel limit, took a worker to 773 MB."""

from __future__ import annotations

import base64
import io
import re
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from apps.jobs.registry import ClientError, PermanentError
from workers.kinds import images
from workers.kinds.images import _fit, bytes_per_pixel


class Ctx:
    job_id = "mem-1"
    attempt = 1
    idempotency_key = "job-mem-1"

    def progress(self, percent: float, message: str = "") -> None:
        pass

    def is_cancelled(self) -> bool:
        return False

    def check_cancelled(self) -> None:
        pass

    def step(self, name, effect):
        return effect()


@pytest.fixture
def media(settings, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path
    return tmp_path / "jobs"


@pytest.fixture
def loads(monkeypatch) -> list[tuple[int, int]]:
    """Every ImageFile.load() call (the decode), recorded by the image's size."""
    calls: list[tuple[int, int]] = []
    real = ImageFile.ImageFile.load

    def load(self):
        calls.append(self.size)
        return real(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return calls


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header says width x height RGB, with a few bytes of pixel data: what a
    highly compressible image looks like before it is decoded (never decoded here)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * (1 + 3 * width))  # one row; the rest would be missing
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def encoded(width: int, height: int, fmt: str, mode: str = "RGB") -> str:
    image = Image.new(mode, (width, height), color=(200, 30, 30) if mode == "RGB" else 128)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return base64.b64encode(buffer.getvalue()).decode()


def test_the_issues_png_is_refused_before_it_is_decoded(media, loads):
    raw = png_claiming(6000, 6600)  # 39.6 M pixels: under the 40 M pixel limit
    assert Image.MAX_IMAGE_PIXELS > 6000 * 6600

    with pytest.raises(ClientError) as caught:
        images.thumbnail(Ctx(), {"image_base64": base64.b64encode(raw).decode(), "sizes": [64]})

    assert loads == []
    message = str(caught.value)
    assert "6000x6600" in message
    assert "MiB" in message
    assert "over the limit" in message
    assert not re.search(r"0x[0-9a-f]{6,}|BytesIO", message)
    assert isinstance(caught.value, PermanentError)  # no retry can help
    assert not (media / "mem-1").exists()


def test_a_png_over_the_budget_but_under_the_pixel_limit_is_refused_without_decoding(settings, media, loads):
    settings.IMAGE_MAX_DECODE_BYTES = 1024 * 1024
    payload = {"image_base64": encoded(600, 600, "PNG"), "sizes": [64]}  # 360,000 px x 4 B = 1.4 MB

    with pytest.raises(ClientError, match="over the limit of 1 MiB"):
        images.thumbnail(Ctx(), payload)

    assert loads == []


def test_a_palette_png_counts_its_conversion_to_rgba(settings, media, loads):
    # 1 byte per pixel decoded (900 KB) fits 1 MiB; its RGBA copy (3.6 MB) does not.
    settings.IMAGE_MAX_DECODE_BYTES = 1024 * 1024
    payload = {"image_base64": encoded(949, 949, "PNG", mode="P"), "sizes": [64]}

    with pytest.raises(ClientError, match="decoding it would take 4 MiB"):
        images.thumbnail(Ctx(), payload)

    assert loads == []


def test_a_png_within_the_budget_is_decoded_at_full_size(settings, media, loads):
    settings.IMAGE_MAX_DECODE_BYTES = 2 * 1024 * 1024

    result = images.thumbnail(Ctx(), {"image_base64": encoded(600, 300, "PNG"), "sizes": [64]})

    assert set(loads) == {(600, 300)}  # load() returns at once after the first decode
    assert result["thumbnails"][0]["width"] == 64
    assert result["thumbnails"][0]["height"] == 32


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_within_the_budget(settings, media, loads):
    # 2400x1600 is 15 MB decoded at full scale; 1/8 scale (300x200) covers a 64 px thumbnail.
    settings.IMAGE_MAX_DECODE_BYTES = 1024 * 1024

    result = images.thumbnail(Ctx(), {"image_base64": encoded(2400, 1600, "JPEG"), "sizes": [64, 32]})

    assert set(loads) == {(300, 200)}
    assert result["source"] == {"width": 2400, "height": 1600}
    assert [(t["width"], t["height"]) for t in result["thumbnails"]] == [(64, 43), (32, 21)]


def test_a_jpeg_still_over_the_budget_at_its_reduced_scale_is_refused(settings, media, loads):
    settings.IMAGE_MAX_DECODE_BYTES = 1024 * 1024
    # A 1024 px thumbnail needs 2048 px of source: no reduction, 15 MB.
    with pytest.raises(ClientError, match="over the limit"):
        images.thumbnail(Ctx(), {"image_base64": encoded(2400, 1600, "JPEG"), "sizes": [1024]})

    assert loads == []


@pytest.mark.parametrize("raw", [b"hello, world", b"\x89PNG\r\n\x1a\n truncated", b"GIF89a" + b"\x00" * 3])
def test_an_unreadable_image_fails_with_a_clean_client_error(media, raw):
    with pytest.raises(ClientError) as caught:
        images.thumbnail(Ctx(), {"image_base64": base64.b64encode(raw).decode(), "sizes": [16]})

    message = str(caught.value)
    assert message.startswith("The data is not an image")
    assert not re.search(r"0x[0-9a-f]{6,}|BytesIO|<", message)


@pytest.mark.parametrize(("mode", "expected"), [("1", 1), ("L", 1), ("P", 1), ("I;16", 2), ("RGB", 4), ("RGBA", 4)])
def test_bytes_per_pixel_is_what_pillow_keeps_in_memory(mode, expected):
    image = Image.new(mode, (10, 10))

    assert bytes_per_pixel(mode) == expected
    assert len(image.tobytes()) <= 100 * expected  # tobytes packs; memory is never less


@pytest.mark.parametrize(("width", "height"), [(300, 150), (150, 300), (1000, 3), (3, 1000), (641, 479), (64, 64)])
@pytest.mark.parametrize("size", [8, 63, 64, 100, 2048])
def test_the_fitted_size_is_the_one_image_thumbnail_gives(width, height, size):
    image = Image.new("RGB", (width, height))
    image.thumbnail((size, size))

    assert (_fit(width, height, size) or (width, height)) == image.size

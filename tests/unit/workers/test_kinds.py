"""Built-in kinds' handlers, called directly with a small fake context: images.thumbnail and
the diagnostic kinds."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import pytest
from PIL import Image

from apps.jobs.registry import JobCancelled, PermanentError, RetryableError, registry
from tests.helpers.images import FakeContext, png_base64
from workers.kinds import diagnostics, images


@pytest.fixture
def media(settings, tmp_path: Path) -> Path:
    """default_storage's root for the test; a job's files are under jobs/<job id>/."""
    settings.MEDIA_ROOT = tmp_path
    return tmp_path / "jobs"


# --- images.thumbnail -------------------------------------------------------------------------


def test_it_writes_one_thumbnail_per_size_keeping_the_aspect_ratio(media):
    ctx = FakeContext(job_id="a1")

    result = images.thumbnail(ctx, {"image_base64": png_base64(300, 150), "sizes": [64, 100]})

    assert result["source"] == {"width": 300, "height": 150}
    thumbs = result["thumbnails"]
    assert [(t["size"], t["width"], t["height"], t["format"]) for t in thumbs] == [
        (100, 100, 50, "PNG"),
        (64, 64, 32, "PNG"),
    ]
    for thumb in thumbs:
        path = media / "a1" / thumb["file"]
        assert path.is_file()
        assert path.name == f"thumbnail-{thumb['size']}.png"
        data = path.read_bytes()
        assert thumb["bytes"] == len(data)
        assert thumb["sha256"] == hashlib.sha256(data).hexdigest()
        with Image.open(path) as written:
            assert written.format == "PNG"
            assert written.size == (thumb["width"], thumb["height"])


def test_a_tall_image_fits_the_box_by_its_height(media):
    result = images.thumbnail(FakeContext(), {"image_base64": png_base64(50, 200), "sizes": [64]})

    (thumb,) = result["thumbnails"]
    assert (thumb["width"], thumb["height"]) == (16, 64)


def test_an_image_smaller_than_the_box_is_not_enlarged(media):
    result = images.thumbnail(FakeContext(), {"image_base64": png_base64(40, 20), "sizes": [512]})

    (thumb,) = result["thumbnails"]
    assert (thumb["width"], thumb["height"]) == (40, 20)


def test_a_size_asked_for_twice_is_made_once(media):
    result = images.thumbnail(FakeContext(job_id="dup"), {"image_base64": png_base64(80, 80), "sizes": [16, 16, 32]})

    assert [t["size"] for t in result["thumbnails"]] == [32, 16]
    assert sorted(p.name for p in (media / "dup").iterdir()) == ["thumbnail-16.png", "thumbnail-32.png"]


@pytest.mark.parametrize(
    ("fmt", "pillow_format", "ext", "mode"),
    [("png", "PNG", "png", "RGBA"), ("jpeg", "JPEG", "jpg", "RGBA"), ("webp", "WEBP", "webp", "RGB")],
)
def test_it_writes_the_format_asked_for(media, fmt, pillow_format, ext, mode):
    payload = {"image_base64": png_base64(120, 60, mode=mode), "sizes": [30], "format": fmt}

    (thumb,) = images.thumbnail(FakeContext(job_id=f"f-{fmt}"), payload)["thumbnails"]

    path = media / f"f-{fmt}" / thumb["file"]
    assert path.name == f"thumbnail-30.{ext}"
    assert thumb["format"] == pillow_format
    assert thumb["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    with Image.open(path) as written:
        assert written.format == pillow_format
        assert written.size == (30, 15)


@pytest.mark.parametrize("mode", ["L", "P", "1"])
def test_it_reads_images_of_other_colour_modes(media, mode):
    (thumb,) = images.thumbnail(
        FakeContext(), {"image_base64": png_base64(64, 32, mode=mode), "sizes": [16], "format": "jpeg"}
    )["thumbnails"]

    assert (thumb["width"], thumb["height"]) == (16, 8)


def test_it_reports_progress_after_each_thumbnail(media):
    ctx = FakeContext()

    images.thumbnail(ctx, {"image_base64": png_base64(90, 90), "sizes": [10, 20, 30]})

    assert [round(p) for p, _ in ctx.reports] == [33, 67, 100]
    assert ctx.reports[-1][1] == "made 10px thumbnail"


def test_rerunning_it_rewrites_the_same_files(media):
    payload = {"image_base64": png_base64(90, 45), "sizes": [20]}

    first = images.thumbnail(FakeContext(job_id="again", attempt=1), payload)
    second = images.thumbnail(FakeContext(job_id="again", attempt=2), payload)

    assert first == second
    assert [p.name for p in (media / "again").iterdir()] == ["thumbnail-20.png"]


def test_it_stops_between_thumbnails_when_the_job_is_cancelled(media):
    ctx = FakeContext(job_id="c", cancel_after=1)

    with pytest.raises(JobCancelled):
        images.thumbnail(ctx, {"image_base64": png_base64(90, 90), "sizes": [10, 20, 30]})

    assert [p.name for p in (media / "c").iterdir()] == ["thumbnail-30.png"]


@pytest.mark.parametrize("data", ["not base64!", "aGVsbG8", "////\n====", "é"])
def test_data_that_is_not_base64_is_a_permanent_error(media, data):
    with pytest.raises(PermanentError, match="not valid base64"):
        images.thumbnail(FakeContext(), {"image_base64": data, "sizes": [16]})


@pytest.mark.parametrize("raw", [b"hello, world", b"\x89PNG\r\n\x1a\n truncated", b"GIF89a" + b"\x00" * 3])
def test_base64_of_bytes_that_are_not_an_image_is_a_permanent_error(media, raw):
    payload = {"image_base64": base64.b64encode(raw).decode(), "sizes": [16]}

    with pytest.raises(PermanentError, match="not an image"):
        images.thumbnail(FakeContext(job_id="bad"), payload)

    assert not (media / "bad").exists()


def test_an_image_of_far_too_many_pixels_is_a_permanent_error(media, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)

    with pytest.raises(PermanentError, match="not an image Pillow can read"):
        images.thumbnail(FakeContext(), {"image_base64": png_base64(100, 30), "sizes": [16]})


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_an_image_over_the_pixel_limit_is_refused(media, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    payload = {"image_base64": png_base64(50, 30), "sizes": [16]}  # 1,500 pixels

    try:
        images.thumbnail(FakeContext(), payload)
    except PermanentError:
        return
    raise AssertionError("an image over Image.MAX_IMAGE_PIXELS was accepted")


@pytest.mark.parametrize(
    "payload",
    [
        {"image_base64": "aGk=", "sizes": [7]},
        {"image_base64": "aGk=", "sizes": [2049]},
        {"image_base64": "aGk=", "sizes": []},
        {"image_base64": "aGk=", "sizes": [16] * 9},
        {"image_base64": "aGk=", "sizes": [16.5]},
        {"image_base64": "aGk=", "sizes": [16], "format": "gif"},
        {"image_base64": "", "sizes": [16]},
        {"sizes": [16]},
        {"image_base64": "aGk="},
        {"image_base64": "aGk=", "upload_id": "0b6f0f5e-7b7a-4f0e-9d57-1b1f2f6f8f11", "sizes": [16]},
        {"upload_id": "not-a-uuid", "sizes": [16]},
        {"upload_id": 42, "sizes": [16]},
    ],
)
def test_the_thumbnail_schema_refuses_payloads_out_of_range(payload):
    assert registry.get("images.thumbnail").payload_errors(payload)


def test_the_thumbnail_schema_accepts_the_range_it_documents():
    k = registry.get("images.thumbnail")

    assert k.payload_errors({"image_base64": "aGk=", "sizes": [8, 2048], "format": "webp"}) == []
    assert k.payload_errors({"image_base64": "aGk=", "sizes": list(range(8, 16))}) == []
    assert k.payload_errors({"upload_id": "0b6f0f5e-7b7a-4f0e-9d57-1b1f2f6f8f11", "sizes": [64]}) == []


# --- diagnostics ------------------------------------------------------------------------------


def test_noop_does_nothing_and_returns_an_empty_result():
    ctx = FakeContext()

    assert diagnostics.noop(ctx, {}) == {}
    assert ctx.reports == []


@pytest.mark.parametrize("attempt", [1, 2])
def test_flaky_fails_retryably_on_its_first_attempts(attempt):
    with pytest.raises(RetryableError, match=f"attempt {attempt} of the first 2"):
        diagnostics.flaky(FakeContext(attempt=attempt), {"fail_times": 2})


def test_flaky_fails_permanently_when_asked():
    with pytest.raises(PermanentError):
        diagnostics.flaky(FakeContext(attempt=1), {"fail_times": 1, "permanent": True})


@pytest.mark.parametrize(("fail_times", "attempt"), [(2, 3), (0, 1), (1, 5)])
def test_flaky_succeeds_once_its_failures_are_spent(fail_times, attempt):
    result = diagnostics.flaky(FakeContext(attempt=attempt), {"fail_times": fail_times, "permanent": True})

    assert result == {"succeeded_on_attempt": attempt}


def test_sleep_sleeps_and_reports_progress_up_to_100():
    ctx = FakeContext()
    started = time.monotonic()

    result = diagnostics.sleep(ctx, {"seconds": 0.35})

    assert time.monotonic() - started >= 0.35
    assert result == {"slept": 0.35}
    percents = [p for p, _ in ctx.reports]
    assert len(percents) >= 3
    assert percents == sorted(percents)
    assert 0 <= percents[0] < 50
    assert ctx.reports[-1] == (100.0, "slept 0.35 s")
    assert ctx.checks >= 3


def test_sleep_of_zero_seconds_returns_at_once():
    ctx = FakeContext()

    assert diagnostics.sleep(ctx, {"seconds": 0}) == {"slept": 0.0}
    assert ctx.reports == [(100.0, "slept 0 s")]


def test_sleep_stops_when_the_job_is_cancelled():
    ctx = FakeContext(cancel_after=3)
    started = time.monotonic()

    with pytest.raises(JobCancelled):
        diagnostics.sleep(ctx, {"seconds": 60})

    assert time.monotonic() - started < 5
    assert ctx.checks == 4
    assert all(p < 100 for p, _ in ctx.reports)


def test_the_diagnostic_schemas_bound_their_payloads():
    sleep = registry.get("diagnostics.sleep")
    flaky = registry.get("diagnostics.flaky")

    assert sleep.payload_errors({"seconds": 3600}) == []
    assert sleep.payload_errors({"seconds": 3600.5})
    assert sleep.payload_errors({"seconds": -0.1})
    assert flaky.payload_errors({"fail_times": 101})
    assert flaky.payload_errors({"fail_times": 1, "permanent": "yes"})
    assert registry.get("diagnostics.noop").payload_errors({"anything": 1})

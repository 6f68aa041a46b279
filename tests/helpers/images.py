"""What a kind's handler is given, faked (a context recording what it is told), and small PNG
images to give it."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

from PIL import Image

from apps.jobs.registry import JobCancelled


class FakeContext:
    """What a handler gets from the runtime, recorded for assertions."""

    def __init__(self, job_id: str = "job-1", attempt: int = 1, cancel_after: int | None = None) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.idempotency_key = f"job-{job_id}"
        self.reports: list[tuple[float, str]] = []
        self.checks = 0
        self.cancel_after = cancel_after
        self.steps: dict[str, Any] = {}

    def progress(self, percent: float, message: str = "") -> None:
        self.reports.append((percent, message))

    def is_cancelled(self) -> bool:
        return self.cancel_after is not None and self.checks > self.cancel_after

    def check_cancelled(self) -> None:
        self.checks += 1
        if self.is_cancelled():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def step(self, name: str, effect: Callable[[], Any]) -> Any:
        if name not in self.steps:
            self.steps[name] = effect()
        return self.steps[name]


def png_base64(width: int, height: int, mode: str = "RGB") -> str:
    image = Image.new(mode, (width, height))
    for x in range(width):  # not a flat colour, so resampling has something to do
        image.putpixel((x, x * height // width), 255 if mode in ("L", "P", "1") else (255, 0, 0, 255)[: len(mode)])
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def png_bytes(width: int = 120, height: int = 60) -> bytes:
    return base64.b64decode(png_base64(width, height))

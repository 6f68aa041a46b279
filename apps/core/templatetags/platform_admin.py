from __future__ import annotations

from django import template
from django.conf import settings

register = template.Library()


@register.simple_tag
def flower_url() -> str:
    """Where the admin header's Flower link points (FLOWER_URL); empty hides the link."""
    return settings.FLOWER_URL or ""


@register.filter
def duration(seconds: float | None) -> str:
    """Seconds as a person reads them: "45 s", "12 min 5 s", "3 h 20 min"; "-" for none."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"

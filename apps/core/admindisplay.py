"""Columns that keep an admin list within 1,366 px: a UUID as its first 8 characters and a
timestamp as "11-28 10:52:03" (local time), each with its full value in a title attribute
(shown on hover, and found by a search of the page), and never wrapped."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

SHORT_ID_CHARS = 8


def short_id(value: Any) -> SafeString | str:
    if value is None:
        return "-"
    full = str(value)
    return format_html(
        '<span class="short-id" title="{}" style="white-space: nowrap">{}</span>', full, full[:SHORT_ID_CHARS]
    )


def compact_datetime(value: datetime | None, *, now: datetime | None = None) -> SafeString | str:
    """Month-day and time; the year too when it is not this year's."""
    if value is None:
        return "-"
    local = timezone.localtime(value)
    this_year = timezone.localtime(now or timezone.now()).year
    shown = local.strftime("%m-%d %H:%M:%S" if local.year == this_year else "%Y-%m-%d %H:%M")
    return format_html(
        '<time datetime="{}" title="{}" style="white-space: nowrap">{}</time>',
        value.isoformat(),
        local.isoformat(sep=" ", timespec="seconds"),
        shown,
    )


def truncated(text: str, chars: int = 20) -> SafeString | str:
    """Text cut to `chars` with an ellipsis, the whole of it in the title."""
    if len(text) <= chars:
        return text
    return format_html('<span title="{}" style="white-space: nowrap">{}…</span>', text, text[: chars - 1])

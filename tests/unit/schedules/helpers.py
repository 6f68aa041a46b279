"""Schedules made through the real services, at a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from apps.schedules import services
from apps.schedules.models import Schedule

T0 = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)


def make(user: Any, *, now: datetime = T0, **fields: Any) -> Schedule:
    fields.setdefault("kind", "diagnostics.noop")
    fields.setdefault("payload", {})
    if "cron" not in fields:
        fields.setdefault("every_seconds", 10)
    return services.schedule_create(owner=user, now=now, **fields)

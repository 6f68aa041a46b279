"""How long a job waits before its next attempt."""

from __future__ import annotations

import random

from django.conf import settings

from apps.jobs.registry import registry


def backoff_seconds(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with "equal jitter": half the step is fixed, half random, so the
    delays grow from one attempt to the next yet retries of many jobs spread out."""
    step = min(cap, base * (2 ** max(0, attempt - 1)))
    return step / 2 + (rng or random).uniform(0, step / 2)


def retry_delay_seconds(*, kind: str, attempt: int) -> float:
    """The backoff after attempt `attempt` of a job of `kind`, by the kind's retry policy (the
    settings' when the kind is gone from the registry)."""
    if kind in registry:
        base, cap = registry.get(kind).retry_bounds()
    else:
        base, cap = settings.JOB_RETRY_BASE_SECONDS, settings.JOB_RETRY_MAX_SECONDS
    return backoff_seconds(attempt, base=base, cap=cap)

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Min, QuerySet
from django.utils import timezone

from apps.core.errors import NotFound
from apps.deadletters.models import DeadLetter


@dataclass(frozen=True)
class DeadLetterFilters:
    state: str | None = DeadLetter.State.OPEN
    kind: str | None = None
    error_type: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def dead_letter_list(*, filters: DeadLetterFilters | None = None) -> QuerySet[DeadLetter]:
    filters = filters or DeadLetterFilters()
    qs = DeadLetter.objects.all()
    if filters.state:
        qs = qs.filter(state=filters.state)
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.error_type:
        qs = qs.filter(error_type=filters.error_type)
    if filters.created_after:
        qs = qs.filter(created_at__gt=filters.created_after)
    if filters.created_before:
        qs = qs.filter(created_at__lt=filters.created_before)
    return qs.order_by("-created_at")


def dead_letter_get(*, letter_id: object) -> DeadLetter:
    try:
        return DeadLetter.objects.get(pk=int(str(letter_id)))
    except (DeadLetter.DoesNotExist, ValueError):
        raise NotFound("No such dead letter.", code="dead_letter_not_found") from None


@dataclass(frozen=True)
class DeadLetterStats:
    depth: int  # open letters
    oldest_age_seconds: float  # 0 when there are none


def dead_letter_stats() -> DeadLetterStats:
    open_letters = DeadLetter.objects.filter(state=DeadLetter.State.OPEN)
    figures = open_letters.aggregate(oldest=Min("created_at"))
    oldest = figures["oldest"]
    age = (timezone.now() - oldest).total_seconds() if oldest else 0.0
    return DeadLetterStats(depth=open_letters.count(), oldest_age_seconds=age)

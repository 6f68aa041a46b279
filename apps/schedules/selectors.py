"""Reading schedules: a client sees only its own; another client's id is a 404."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.schedules.models import Schedule


def schedule_list(*, owner: AbstractBaseUser) -> QuerySet[Schedule]:
    return Schedule.objects.filter(owner=owner)


def schedule_get(*, owner: AbstractBaseUser, schedule_id: Any) -> Schedule:
    schedule = Schedule.objects.filter(owner=owner, pk=schedule_id).first()
    if schedule is None:
        raise NotFound("No such schedule.", code="schedule_not_found")
    return schedule

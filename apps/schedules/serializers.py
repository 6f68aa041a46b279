"""What a client sends to make or change a schedule, and what it sees of one."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import serializers

from apps.jobs.models import Priority
from apps.jobs.serializers.inputs import StrictInput
from apps.schedules import timing
from apps.schedules.models import Schedule

_EVERY_HELP = (
    f"Fire every this many seconds (1 to {timing.EVERY_SECONDS_MAX}), the first one interval after the "
    "schedule is made or its timing changed. Give this or cron, not both."
)
_CRON_HELP = (
    "A five-field cron expression (minute hour day-of-month month day-of-week), evaluated in `timezone`. "
    "Give this or every_seconds, not both."
)


class ScheduleCreateInput(StrictInput):
    kind = serializers.CharField(max_length=100)
    payload = serializers.JSONField(default=dict)
    # The range is checked by the service, so a 0 answers invalid_every_seconds, not a generic error.
    cron = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, trim_whitespace=False, help_text=_CRON_HELP
    )
    every_seconds = serializers.IntegerField(required=False, allow_null=True, help_text=_EVERY_HELP)
    timezone = serializers.CharField(
        required=False, default="UTC", trim_whitespace=False, help_text="An IANA time zone for cron (default UTC)."
    )
    enabled = serializers.BooleanField(required=False, default=True)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False, help_text="Default: the kind's own.")


class ScheduleUpdateInput(StrictInput):
    """A PATCH: any of the fields a schedule is made with. Giving cron clears every_seconds
    and the other way round."""

    kind = serializers.CharField(max_length=100, required=False)
    payload = serializers.JSONField(required=False)
    cron = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, trim_whitespace=False, help_text=_CRON_HELP
    )
    every_seconds = serializers.IntegerField(required=False, allow_null=True, help_text=_EVERY_HELP)
    timezone = serializers.CharField(required=False, trim_whitespace=False)
    enabled = serializers.BooleanField(required=False)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)


class ScheduleLinksOutput(serializers.Serializer):
    self = serializers.URLField()


class ScheduleOutput(serializers.Serializer):
    id = serializers.UUIDField()
    kind = serializers.CharField()
    payload = serializers.JSONField()
    priority = serializers.ChoiceField(choices=Priority.choices, allow_null=True, help_text="null: the kind's own.")
    cron = serializers.CharField(allow_null=True)
    every_seconds = serializers.IntegerField(allow_null=True)
    timezone = serializers.CharField()
    description = serializers.CharField(help_text="The timing in words.")
    enabled = serializers.BooleanField()
    next_run_at = serializers.DateTimeField(help_text="When the next firing is due (while enabled).")
    last_fired_at = serializers.DateTimeField(allow_null=True)
    last_scheduled_for = serializers.DateTimeField(allow_null=True, help_text="The due time of the last firing.")
    last_job = serializers.UUIDField(allow_null=True, help_text="The job the last firing made.")
    last_error = serializers.CharField(help_text="Why the last firing made no job; empty when it made one.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    links = ScheduleLinksOutput()

    @classmethod
    def of(cls, schedule: Schedule, *, request: Any = None) -> dict[str, Any]:
        path = reverse("schedule-detail", args=[schedule.pk])
        return cls(
            {
                "id": schedule.pk,
                "kind": schedule.kind,
                "payload": schedule.payload,
                "priority": schedule.priority or None,
                "cron": schedule.cron or None,
                "every_seconds": schedule.every_seconds,
                "timezone": schedule.timezone,
                "description": timing.describe(
                    cron=schedule.cron, every_seconds=schedule.every_seconds, timezone=schedule.timezone
                ),
                "enabled": schedule.enabled,
                "next_run_at": schedule.next_run_at,
                "last_fired_at": schedule.last_fired_at,
                "last_scheduled_for": schedule.last_scheduled_for,
                "last_job": schedule.last_job_id,
                "last_error": schedule.last_error,
                "created_at": schedule.created_at,
                "updated_at": schedule.updated_at,
                "links": {"self": request.build_absolute_uri(path) if request is not None else path},
            }
        ).data


class SchedulePageOutput(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = ScheduleOutput(many=True)

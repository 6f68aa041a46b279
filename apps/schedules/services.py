"""Creating, changing and deleting schedules. Every input is checked when it is given: the
timing (apps.schedules.timing) and the kind and payload, with the same checks a client's job
submission gets (apps.jobs.lifecycle.job_check), so a schedule never fires a job its kind
refuses. Firing them is apps.schedules.firing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from apps.core.errors import InvalidInput
from apps.jobs import lifecycle
from apps.schedules import timing
from apps.schedules.models import Schedule

# The fields a PATCH may change; anything else in the body is refused by the serializer.
_TIMING_FIELDS = ("cron", "every_seconds", "timezone")


def schedule_check(
    *,
    owner: AbstractBaseUser,
    kind: str,
    payload: Any,
    priority: str | None,
    cron: str | None,
    every_seconds: int | None,
    timezone_name: str,
    now: datetime,
    from_client: bool = True,
) -> tuple[str, int | None]:
    """Every check of a schedule as a whole, in the order a client fixes them: the timing
    (exactly one of cron and every_seconds, each valid, and the time zone), then the job it
    fires (kind, payload against the kind's schema, priority). Returns (cron, every_seconds)
    normalised."""
    has_cron, has_every = bool(cron), every_seconds is not None
    if has_cron == has_every:
        raise InvalidInput(
            "Give exactly one of cron (a five-field expression) and every_seconds.",
            code="invalid_timing",
            details={"cron": cron or None, "every_seconds": every_seconds},
        )
    timing.timezone_check(timezone_name)
    if has_every:
        every_seconds = timing.every_seconds_check(every_seconds)
        cron = ""
    else:
        cron = timing.cron_check(str(cron), now=now)
    lifecycle.job_check(owner=owner, kind=kind, payload=payload, priority=priority or None, from_client=from_client)
    return cron, every_seconds


def schedule_create(
    *,
    owner: AbstractBaseUser,
    kind: str,
    payload: Any,
    cron: str | None = None,
    every_seconds: int | None = None,
    timezone_name: str = "UTC",
    enabled: bool = True,
    priority: str | None = None,
    now: datetime | None = None,
    from_client: bool = False,
) -> Schedule:
    """A new schedule, first due at its next time after `now`. `from_client` (the API sets
    it) refuses what a client's job submission refuses: internal kinds, unsafe outbound
    URLs in the payload, and high priority unless the client may ask for it."""
    now = now or timezone.now()
    cron, every_seconds = schedule_check(
        owner=owner,
        kind=kind,
        payload=payload,
        priority=priority,
        cron=cron,
        every_seconds=every_seconds,
        timezone_name=timezone_name,
        now=now,
        from_client=from_client,
    )
    return Schedule.objects.create(
        owner=owner,
        kind=kind,
        payload=payload,
        priority=priority or "",
        cron=cron,
        every_seconds=every_seconds,
        timezone=timezone_name,
        enabled=enabled,
        next_run_at=timing.next_run_after(
            cron=cron, timezone=timezone_name, every_seconds=every_seconds, due=None, after=now
        ),
        created_at=now,
    )


def schedule_update(
    *, schedule: Schedule, changes: dict[str, Any], now: datetime | None = None, from_client: bool = False
) -> Schedule:
    """Apply a PATCH: the schedule as it would be afterwards is checked as a whole. Giving
    cron clears every_seconds and the other way round, so a client switches with one field.
    A changed timing, or a schedule enabled again, is next due at its next time after `now`:
    what a disabled schedule missed does not run."""
    now = now or timezone.now()
    with transaction.atomic():
        # Under the row's lock: the leader's firing (which locks due rows, skipping locked
        # ones) and this change never interleave.
        current = Schedule.objects.select_for_update().get(pk=schedule.pk)
        after = {
            "kind": changes.get("kind", current.kind),
            "payload": changes.get("payload", current.payload),
            "priority": changes.get("priority", current.priority) or "",
            "cron": current.cron,
            "every_seconds": current.every_seconds,
            "timezone": changes.get("timezone", current.timezone),
            "enabled": changes.get("enabled", current.enabled),
        }
        if "cron" in changes:
            after["cron"], after["every_seconds"] = changes["cron"] or "", None
        if "every_seconds" in changes:
            after["every_seconds"] = changes["every_seconds"]
            if "cron" not in changes:
                after["cron"] = ""
        reenabled = after["enabled"] and not current.enabled
        # Disabling alone checks nothing: a schedule whose kind has since changed its schema
        # can always be stopped.
        if reenabled or any(name != "enabled" for name in changes):
            after["cron"], after["every_seconds"] = schedule_check(
                owner=current.owner,
                kind=after["kind"],
                payload=after["payload"],
                priority=after["priority"],
                cron=after["cron"],
                every_seconds=after["every_seconds"],
                timezone_name=after["timezone"],
                now=now,
                from_client=from_client,
            )
        retimed = any(after[name] != getattr(current, name) for name in _TIMING_FIELDS)
        for name, value in after.items():
            setattr(current, name, value)
        if retimed or reenabled:
            current.next_run_at = timing.next_run_after(
                cron=current.cron, timezone=current.timezone, every_seconds=current.every_seconds, due=None, after=now
            )
        current.save()
    return current


def schedule_set_enabled(*, schedule: Schedule, enabled: bool, now: datetime | None = None) -> Schedule:
    """Enable or disable (the admin's actions; the API's PATCH of `enabled` is the same)."""
    return schedule_update(schedule=schedule, changes={"enabled": enabled}, now=now)


def schedule_delete(*, schedule: Schedule) -> None:
    """Delete the schedule; the jobs it made stay, still naming it by id."""
    Schedule.objects.filter(pk=schedule.pk).delete()

"""The admin's schedules: editable (through the same checks and services as the API), the
timing in words with its next five run times, a "Run now" button behind a confirmation
(apps.core.adminactions), and enable/disable on a selection."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from apps.core.adminactions import ObjectAction, ObjectActionsMixin, Outcome
from apps.core.admindisplay import compact_datetime, short_id
from apps.core.errors import ApplicationError
from apps.schedules import firing, services, timing
from apps.schedules.models import Schedule

# Which form field an error's code belongs to, so the admin shows it beside that field.
_ERROR_FIELDS = {
    "invalid_cron": "cron",
    "invalid_every_seconds": "every_seconds",
    "invalid_timezone": "timezone",
    "unknown_kind": "kind",
    "invalid_payload": "payload",
    "unsafe_url": "payload",
    "invalid_priority": "priority",
}
_EDITABLE = ("kind", "payload", "priority", "cron", "every_seconds", "timezone", "enabled")


class ScheduleForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = ("owner", *_EDITABLE)
        help_texts = {
            "cron": "Five fields: minute hour day-of-month month day-of-week. Leave empty to use every seconds.",
            "every_seconds": "Leave empty to use cron.",
            "timezone": "An IANA name, such as UTC or Europe/Berlin; cron is evaluated there.",
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        owner = data.get("owner") or getattr(self.instance, "owner", None)
        if self.errors or owner is None:
            return data
        try:
            services.schedule_check(
                owner=owner,
                kind=data.get("kind", ""),
                payload=data.get("payload"),
                priority=data.get("priority") or None,
                cron=data.get("cron") or None,
                every_seconds=data.get("every_seconds"),
                timezone_name=data.get("timezone") or "",
                now=timezone.now(),
                from_client=False,
            )
        except ApplicationError as exc:
            self.add_error(_ERROR_FIELDS.get(exc.code), exc.message)
        return data


def _run_now(schedule: Schedule, actor: str) -> Outcome:
    job = firing.schedule_run_now(schedule=schedule)
    if job is None:
        schedule.refresh_from_db()
        return Outcome(f"{schedule} made no job: {schedule.last_error}", messages.ERROR)
    return Outcome(f"{schedule} ran now: job {job.pk} is queued.")


@admin.register(Schedule)
class ScheduleAdmin(ObjectActionsMixin, admin.ModelAdmin):
    form = ScheduleForm
    read_only_pages = False  # editable: Save goes through the services (ScheduleForm)
    list_display = ("short", "kind", "when", "enabled", "owner", "next_run", "last_fired", "last_error_short")
    list_filter = ("enabled",)
    search_fields = ("=id", "kind")
    ordering = ("-created_at",)
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    actions = ("enable", "disable")
    readonly_fields = (
        "id",
        "in_words",
        "upcoming",
        "next_run_at",
        "last_fired_at",
        "last_scheduled_for",
        "last_job",
        "last_error",
        "jobs",
        "created_at",
        "updated_at",
    )
    object_actions = (
        ObjectAction(
            name="run-now",
            label="Run now",
            question="Run {object} now? One job is submitted at once; the next timed firing stays as it is.",
            applies=lambda schedule: True,
            perform=_run_now,
        ),
    )

    def get_fieldsets(self, request: HttpRequest, obj: Schedule | None = None) -> Any:
        if obj is None:
            return [(None, {"fields": ("owner", *_EDITABLE)})]
        return [
            (None, {"fields": ("id", "owner", "kind", "payload", "priority", "enabled")}),
            ("Timing", {"fields": ("cron", "every_seconds", "timezone", "in_words", "upcoming")}),
            (
                "Firings",
                {"fields": ("last_fired_at", "last_scheduled_for", "last_job", "last_error", "jobs")},
            ),
            (None, {"fields": ("created_at", "updated_at")}),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Schedule | None = None) -> Any:
        # The owner is chosen once: the jobs a schedule already made are that owner's.
        return (*self.readonly_fields, "owner") if obj is not None else self.readonly_fields

    def save_model(self, request: HttpRequest, obj: Schedule, form: forms.ModelForm, change: bool) -> None:
        data = form.cleaned_data
        if change:
            changes = {name: data[name] for name in _EDITABLE if name in form.changed_data}
            saved = services.schedule_update(schedule=obj, changes=changes)
        else:
            saved = services.schedule_create(
                owner=data["owner"],
                kind=data["kind"],
                payload=data["payload"],
                priority=data.get("priority") or None,
                cron=data.get("cron") or None,
                every_seconds=data.get("every_seconds"),
                timezone_name=data["timezone"],
                enabled=data["enabled"],
            )
        for field in Schedule._meta.concrete_fields:  # what the admin goes on to show and log
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False

    # --- list actions -------------------------------------------------------------------

    @admin.action(description="Enable the selected schedules", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(description="Disable the selected schedules", permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._set_enabled(request, queryset, enabled=False)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Schedule], *, enabled: bool) -> None:
        changed, refused = 0, []
        for schedule in queryset.filter(enabled=not enabled):
            try:
                services.schedule_set_enabled(schedule=schedule, enabled=enabled)
                changed += 1
            except ApplicationError as exc:
                refused.append(f"{schedule}: {exc.message}")
        verb = "enabled" if enabled else "disabled"
        self.message_user(request, f"{changed} schedule(s) {verb}.", messages.SUCCESS)
        if refused:
            self.message_user(request, "Not enabled: " + "; ".join(refused), messages.ERROR)

    # --- columns and read-only fields ---------------------------------------------------

    @admin.display(description="id", ordering="id")
    def short(self, schedule: Schedule) -> SafeString | str:
        return short_id(schedule.id)

    @admin.display(description="timing")
    def when(self, schedule: Schedule) -> str:
        return schedule.cron or f"every {schedule.every_seconds} s"

    @admin.display(description="next run", ordering="next_run_at")
    def next_run(self, schedule: Schedule) -> SafeString | str:
        return compact_datetime(schedule.next_run_at) if schedule.enabled else "-"

    @admin.display(description="last fired", ordering="last_fired_at")
    def last_fired(self, schedule: Schedule) -> SafeString | str:
        return compact_datetime(schedule.last_fired_at)

    @admin.display(description="last error")
    def last_error_short(self, schedule: Schedule) -> str:
        return schedule.last_error[:80] or "-"

    @admin.display(description="in words")
    def in_words(self, schedule: Schedule) -> str:
        return timing.describe(cron=schedule.cron, every_seconds=schedule.every_seconds, timezone=schedule.timezone)

    @admin.display(description="next five runs")
    def upcoming(self, schedule: Schedule) -> SafeString | str:
        if not schedule.enabled:
            return "- (disabled)"
        try:
            runs = timing.upcoming_runs(
                cron=schedule.cron,
                timezone=schedule.timezone,
                every_seconds=schedule.every_seconds,
                start=schedule.next_run_at,
            )
            zone = timing.timezone_check(schedule.timezone)
        except Exception:  # a form sent back with errors carries the refused timing: show none
            return "-"
        return format_html(
            '<ol class="upcoming-runs" style="margin: 0; padding-left: 1.5em">{}</ol>',
            format_html_join(
                "",
                "<li><time datetime='{}'>{}</time></li>",
                ((run.isoformat(), run.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")) for run in runs),
            ),
        )

    @admin.display(description="last job")
    def last_job(self, schedule: Schedule) -> SafeString | str:
        if schedule.last_job_id is None:
            return "-"
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:jobs_job_change", args=[schedule.last_job_id]), schedule.last_job_id
        )

    @admin.display(description="jobs")
    def jobs(self, schedule: Schedule) -> SafeString:
        listing = reverse("admin:jobs_job_changelist") + f"?schedule_id={schedule.id}"
        return format_html('<a href="{}">The jobs this schedule made</a>', listing)

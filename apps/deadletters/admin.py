from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from apps.core.adminactions import ObjectAction, ObjectActionsMixin, Outcome
from apps.core.admindisplay import compact_datetime, short_id
from apps.core.adminscale import IndexedValuesFilter, ScaledModelAdmin
from apps.core.errors import Conflict
from apps.deadletters import services
from apps.deadletters.models import DeadLetter
from apps.jobs.admin import pre, pretty_json, run_bulk
from apps.jobs.models import BulkOperation


def _redrive(letter: DeadLetter, actor: str) -> Outcome:
    try:
        resolution = services.dead_letter_redrive(letter_id=letter.pk, actor=actor)
    except Conflict as exc:
        return Outcome(f"Dead letter {letter.pk} was left open: {exc.message}", messages.ERROR)
    if not resolution.changed:
        return Outcome(f"Dead letter {letter.pk} was already {resolution.letter.state}.", messages.WARNING)
    return Outcome(f"Dead letter {letter.pk} redriven: job {letter.job_id} is queued again with fresh attempts.")


def _discard(letter: DeadLetter, actor: str) -> Outcome:
    resolution = services.dead_letter_discard(letter_id=letter.pk, actor=actor)
    if not resolution.changed:
        return Outcome(f"Dead letter {letter.pk} was already {resolution.letter.state}.", messages.WARNING)
    return Outcome(f"Dead letter {letter.pk} discarded: job {letter.job_id} stays failed and will not run again.")


def _is_open(letter: DeadLetter) -> bool:
    return letter.state == DeadLetter.State.OPEN


LETTER_BUTTONS = (
    ObjectAction(
        name="redrive",
        label="Redrive",
        question="Redrive {object}? Its job is queued again with a fresh allowance of attempts.",
        applies=_is_open,
        perform=_redrive,
        not_applicable="{object} is no longer open: there is nothing to redrive.",
    ),
    ObjectAction(
        name="discard",
        label="Discard",
        question="Discard {object}? The letter is closed and its job stays failed, never run again.",
        applies=_is_open,
        perform=_discard,
        not_applicable="{object} is no longer open: there is nothing to discard.",
    ),
)


@admin.register(DeadLetter)
class DeadLetterAdmin(ObjectActionsMixin, ScaledModelAdmin):
    """Read-only: a letter changes only by redrive or discard, and is never deleted here
    (every failed job keeps its letter; retention prunes resolved ones)."""

    list_display = ["id", "kind", "error_type", "state", "attempts", "job_link", "created"]
    object_actions = LETTER_BUTTONS
    list_filter = [
        "state",
        ("kind", IndexedValuesFilter),
        ("error_type", IndexedValuesFilter),
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["=job__id", "=kind", "=error_type"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    readonly_fields = [
        "job",
        "kind",
        "state",
        "attempts",
        "payload_pretty",
        "error_type",
        "error_message",
        "errors_pretty",
        "traceback_pretty",
        "created_at",
        "resolved_at",
        "resolved_by",
        "alerted_at",
    ]
    exclude = ["payload", "errors", "traceback"]
    actions = ["redrive", "discard"]

    @admin.action(description="Redrive: run the selected jobs again with fresh attempts", permissions=["change"])
    def redrive(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        run_bulk(self, request, queryset, action=BulkOperation.Action.REDRIVE, target="dead_letters", verb="redriven")

    @admin.action(description="Discard: close the selected letters without running the jobs", permissions=["change"])
    def discard(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        run_bulk(self, request, queryset, action=BulkOperation.Action.DISCARD, target="dead_letters", verb="discarded")

    @admin.display(description="job", ordering="job_id")
    def job_link(self, letter: DeadLetter) -> str:
        url = reverse("admin:jobs_job_change", args=[letter.job_id], current_app=self.admin_site.name)
        return format_html('<a href="{}">{}</a>', url, short_id(letter.job_id))

    @admin.display(description="created", ordering="created_at")
    def created(self, letter: DeadLetter) -> str:
        return compact_datetime(letter.created_at)

    @admin.display(description="payload")
    def payload_pretty(self, letter: DeadLetter) -> str:
        return pretty_json(letter.payload)

    @admin.display(description="errors of every attempt")
    def errors_pretty(self, letter: DeadLetter) -> str:
        return pretty_json(letter.errors)

    @admin.display(description="last traceback")
    def traceback_pretty(self, letter: DeadLetter) -> str:
        return pre(letter.traceback)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):  # type: ignore[no-untyped-def]
        # Exact matches, each an index look-up: Django's "=field" search compares
        # UPPER(column::text), which no index serves (a full scan per query, three per page).
        term = search_term.strip()
        if not term:
            return queryset, False
        matches = queryset.filter(kind=term) | queryset.filter(error_type=term)
        try:
            uuid.UUID(term)
        except ValueError:
            return matches, False
        return matches | queryset.filter(job_id=term), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: DeadLetter | None = None) -> bool:
        return False

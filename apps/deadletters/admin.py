from __future__ import annotations

import uuid

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.adminscale import IndexedValuesFilter, ScaledModelAdmin
from apps.deadletters.models import DeadLetter
from apps.jobs.admin import pre, pretty_json, run_bulk
from apps.jobs.models import BulkOperation


@admin.register(DeadLetter)
class DeadLetterAdmin(ScaledModelAdmin):
    list_display = ["id", "kind", "error_type", "state", "attempts", "job", "created_at"]
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
    ]
    exclude = ["payload", "errors", "traceback"]
    actions = ["redrive", "discard"]

    @admin.action(description="Redrive: run the selected jobs again with fresh attempts")
    def redrive(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        run_bulk(self, request, queryset, action=BulkOperation.Action.REDRIVE, target="dead_letters", verb="redriven")

    @admin.action(description="Discard: close the selected letters without running the jobs")
    def discard(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        run_bulk(self, request, queryset, action=BulkOperation.Action.DISCARD, target="dead_letters", verb="discarded")

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

from __future__ import annotations

import json

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from apps.jobs.models import Job, JobAttempt, JobStep


def pretty_json(value: object) -> str:
    if value is None:
        return "-"
    return format_html(
        '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False),
    )


def pre(text: str) -> str:
    if not text:
        return "-"
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', text)


class JobAttemptInline(admin.TabularInline):
    model = JobAttempt
    extra = 0
    can_delete = False
    fields = ["number", "outcome", "worker", "started_at", "finished_at", "duration_ms", "error_type", "error_message"]
    readonly_fields = fields
    ordering = ["number"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "priority", "attempts", "owner", "created_at", "finished_at"]
    list_filter = ["status", "kind", "priority", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["=id", "=kind"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    ordering = ["-created_at"]
    # A million rows: no full-table COUNT(*) for the "x of y" line on every page.
    show_full_result_count = False
    inlines = [JobAttemptInline]
    readonly_fields = [
        "id",
        "owner",
        "kind",
        "status",
        "priority",
        "queue",
        "attempts",
        "max_attempts",
        "progress_percent",
        "progress_message",
        "payload_pretty",
        "result_pretty",
        "error_type",
        "error_message",
        "traceback_pretty",
        "created_at",
        "run_at",
        "started_at",
        "finished_at",
        "published_at",
        "worker",
        "lease_expires_at",
        "cancel_requested_at",
        "request_id",
    ]
    fieldsets = [
        (None, {"fields": ["id", "owner", "kind", "status", "priority", "queue", "attempts", "max_attempts"]}),
        ("Progress", {"fields": ["progress_percent", "progress_message"]}),
        ("Input and output", {"fields": ["payload_pretty", "result_pretty"]}),
        ("Error", {"fields": ["error_type", "error_message", "traceback_pretty"]}),
        ("Timing", {"fields": ["created_at", "run_at", "started_at", "finished_at", "published_at"]}),
        ("Delivery", {"fields": ["worker", "lease_expires_at", "cancel_requested_at", "request_id"]}),
    ]

    @admin.display(description="payload")
    def payload_pretty(self, job: Job) -> str:
        return pretty_json(job.payload)

    @admin.display(description="result")
    def result_pretty(self, job: Job) -> str:
        return pretty_json(job.result)

    @admin.display(description="traceback")
    def traceback_pretty(self, job: Job) -> str:
        return pre(job.error_traceback)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):  # type: ignore[no-untyped-def]
        # `=id` on a UUID column fails for text that is not a UUID; search only the kind then.
        import uuid

        term = search_term.strip()
        try:
            uuid.UUID(term)
        except ValueError:
            if term:
                return queryset.filter(kind=term), False
            return queryset, False
        return queryset.filter(id=term), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs are submitted through the API, which validates them


@admin.register(JobStep)
class JobStepAdmin(admin.ModelAdmin):
    list_display = ["job", "name", "attempt", "created_at"]
    search_fields = ["=job__id", "name"]
    readonly_fields = ["job", "name", "result", "attempt", "created_at"]

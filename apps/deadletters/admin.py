from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.deadletters import services
from apps.deadletters.models import DeadLetter
from apps.jobs.admin import pre, pretty_json


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "error_type", "state", "attempts", "job", "created_at"]
    list_filter = ["state", "kind", "error_type", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["=job__id", "=kind", "=error_type"]
    date_hierarchy = "created_at"
    show_full_result_count = False
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
        ids = list(queryset.values_list("pk", flat=True))
        done = services.dead_letters_redrive_many(letter_ids=ids, actor=request.user.get_username())
        self.message_user(request, f"{done} redriven; {len(ids) - done} were already resolved.", messages.SUCCESS)

    @admin.action(description="Discard: close the selected letters without running the jobs")
    def discard(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        done = services.dead_letters_discard_many(letter_ids=ids, actor=request.user.get_username())
        self.message_user(request, f"{done} discarded; {len(ids) - done} were already resolved.", messages.SUCCESS)

    @admin.display(description="payload")
    def payload_pretty(self, letter: DeadLetter) -> str:
        return pretty_json(letter.payload)

    @admin.display(description="errors of every attempt")
    def errors_pretty(self, letter: DeadLetter) -> str:
        return pretty_json(letter.errors)

    @admin.display(description="last traceback")
    def traceback_pretty(self, letter: DeadLetter) -> str:
        return pre(letter.traceback)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

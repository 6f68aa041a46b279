from __future__ import annotations

import json
import uuid

from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from apps.core.adminactions import ObjectAction, ObjectActionsMixin, Outcome
from apps.core.admindisplay import compact_datetime, short_id, truncated
from apps.core.adminscale import IndexedRelatedOnlyFilter, IndexedValuesFilter, ScaledModelAdmin
from apps.jobs import operations
from apps.jobs.joblogs_admin import JobLogLineAdmin, render_job_logs
from apps.jobs.models import (
    ACTIVE_STATUSES,
    BulkOperation,
    IdempotencyKey,
    Job,
    JobAttempt,
    JobLogLine,
    JobStatus,
    JobStep,
)


def run_bulk(
    model_admin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, *, action: str, target: str, verb: str
) -> None:
    """Act on a page's selection at once; on "all N matching" (select_across), hand the
    filter to a background operation whose progress shows under Bulk operations."""
    actor = request.user.get_username()
    if request.POST.get("select_across") == "1":
        operation = operations.bulk_operation_start(
            action=action, target=target, filters=request.GET.urlencode(), actor=actor
        )
        link = reverse("admin:jobs_bulkoperation_change", args=[operation.pk])
        model_admin.message_user(
            request,
            format_html(
                'Every matching row will be {} in the background: <a href="{}">follow its progress</a>.', verb, link
            ),
            messages.INFO,
        )
        return
    pks = list(queryset.values_list("pk", flat=True))
    changed = operations.apply_many(action=action, target=target, pks=pks, actor=actor)
    model_admin.message_user(request, f"{changed} {verb}; {len(pks) - changed} left as they were.", messages.SUCCESS)


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


def _retry(job: Job, actor: str) -> Outcome:
    if operations.job_retry(job_id=job.pk, actor=actor):
        return Outcome(f"Job {job.pk} is queued again with a fresh allowance of attempts.")
    return Outcome(f"Job {job.pk} was left as it was: only a failed or cancelled job can be retried.", messages.WARNING)


def _cancel(job: Job, actor: str) -> Outcome:
    if not operations.job_cancel_by_id(job_id=job.pk):
        return Outcome(f"Job {job.pk} was left as it was: it had already finished.", messages.WARNING)
    if Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).exists():
        return Outcome(f"Job {job.pk} was asked to stop: its handler stops at its next cancellation check.")
    return Outcome(f"Job {job.pk} is cancelled.")


JOB_BUTTONS = (
    ObjectAction(
        name="retry",
        label="Retry",
        question="Run job {object} again, with a fresh allowance of attempts? Its history is kept.",
        applies=lambda job: job.status in (JobStatus.FAILED, JobStatus.CANCELLED),
        perform=_retry,
        not_applicable="Only a failed or cancelled job can be retried; {object} is not.",
    ),
    ObjectAction(
        name="cancel",
        label="Cancel",
        question="Cancel job {object}? A waiting job never starts; a running one is asked to stop.",
        applies=lambda job: job.status in ACTIVE_STATUSES,
        perform=_cancel,
        not_applicable="Only a waiting, queued, retrying or running job can be cancelled; {object} is not.",
    ),
)


class WorkflowFilter(admin.SimpleListFilter):
    """?workflow_id=<id>: one workflow's jobs (the workflow's admin page links here). It offers
    no list of workflows to pick from, which would read every job; once chosen, it shows which
    one and lets it be cleared. Served by the job_workflow index, whatever the table's size."""

    title = "workflow"
    parameter_name = "workflow_id"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        value = self.value()
        return [(value, short_id(value))] if value else []

    def queryset(self, request: HttpRequest, queryset: QuerySet[Job]) -> QuerySet[Job]:
        value = self.value()
        if not value:
            return queryset
        try:
            workflow_id = uuid.UUID(value)
        except ValueError:
            raise IncorrectLookupParameters(f"{value[:50]!r} is not a workflow id") from None
        return queryset.filter(workflow_id=workflow_id)


@admin.register(Job)
class JobAdmin(ObjectActionsMixin, ScaledModelAdmin):
    list_display = ["job_id", "kind", "status", "priority", "attempts", "owner_name", "created", "finished"]
    list_display_links = ["job_id"]
    object_actions = JOB_BUTTONS
    list_filter = [
        "status",
        ("kind", IndexedValuesFilter),
        "priority",
        ("owner", IndexedRelatedOnlyFilter),
        ("created_at", admin.DateFieldListFilter),
        WorkflowFilter,
    ]
    actions = ["retry", "cancel"]
    search_fields = ["=id", "=kind"]
    date_hierarchy = "created_at"
    list_select_related = ["owner"]
    ordering = ["-created_at"]
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
        "log_lines",
    ]
    fieldsets = [
        (None, {"fields": ["id", "owner", "kind", "status", "priority", "queue", "attempts", "max_attempts"]}),
        ("Progress", {"fields": ["progress_percent", "progress_message"]}),
        ("Input and output", {"fields": ["payload_pretty", "result_pretty"]}),
        ("Error", {"fields": ["error_type", "error_message", "traceback_pretty"]}),
        ("Timing", {"fields": ["created_at", "run_at", "started_at", "finished_at", "published_at"]}),
        ("Delivery", {"fields": ["worker", "lease_expires_at", "cancel_requested_at", "request_id"]}),
        ("Logs", {"fields": ["log_lines"]}),
    ]

    @admin.display(description="id", ordering="id")
    def job_id(self, job: Job) -> str:
        return short_id(job.pk)

    @admin.display(description="owner", ordering="owner__username")
    def owner_name(self, job: Job) -> str:
        return truncated(job.owner.get_username())

    @admin.display(description="created", ordering="created_at")
    def created(self, job: Job) -> str:
        return compact_datetime(job.created_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, job: Job) -> str:
        return compact_datetime(job.finished_at)

    @admin.display(description="payload")
    def payload_pretty(self, job: Job) -> str:
        return pretty_json(job.payload)

    @admin.display(description="result")
    def result_pretty(self, job: Job) -> str:
        return pretty_json(job.result)

    @admin.display(description="traceback")
    def traceback_pretty(self, job: Job) -> str:
        return pre(job.error_traceback)

    @admin.display(description="what the handler logged")
    def log_lines(self, job: Job) -> str:
        return render_job_logs(job)

    @admin.action(description="Retry: run the selected failed or cancelled jobs again", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        run_bulk(self, request, queryset, action=BulkOperation.Action.RETRY, target="jobs", verb="retried")

    @admin.action(description="Cancel the selected waiting or running jobs", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        run_bulk(self, request, queryset, action=BulkOperation.Action.CANCEL, target="jobs", verb="cancelled")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):  # type: ignore[no-untyped-def]
        # `=id` on a UUID column fails for text that is not a UUID; search only the kind then.
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            uuid.UUID(term)
        except ValueError:
            # A kind, or a client's Idempotency-Key (both exact: each is an index look-up).
            keyed = IdempotencyKey.objects.filter(key=term).values("job_id")
            return queryset.filter(kind=term) | queryset.filter(id__in=keyed), False
        return queryset.filter(id=term), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # jobs are submitted through the API, which validates them


admin.site.register(JobLogLine, JobLogLineAdmin)


@admin.register(JobStep)
class JobStepAdmin(admin.ModelAdmin):
    list_display = ["job", "name", "attempt", "created_at"]
    search_fields = ["=job__id", "name"]
    readonly_fields = ["job", "name", "result", "attempt", "created_at"]


@admin.register(BulkOperation)
class BulkOperationAdmin(admin.ModelAdmin):
    list_display = ["id", "action", "target", "state", "progress", "changed", "created_by", "created_at", "finished_at"]
    list_filter = ["state", "action", "target"]
    readonly_fields = [
        "action",
        "target",
        "filters",
        "state",
        "total",
        "processed",
        "changed",
        "progress",
        "message",
        "created_by",
        "created_at",
        "finished_at",
    ]
    exclude = ["cursor"]

    @admin.display(description="progress")
    def progress(self, operation: BulkOperation) -> str:
        total = "?" if operation.total is None else operation.total
        return f"{operation.percent:.0f}% ({operation.processed} of {total})"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

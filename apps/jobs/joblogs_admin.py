"""A job's log lines in the admin: a read-only section of the job's page (newest attempt
first, at most ADMIN_LOG_LINES lines, each attempt linking to all of its lines) and the
lines' own list, filtered to one job and attempt."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from apps.core.admindisplay import compact_datetime, short_id
from apps.core.adminscale import ScaledModelAdmin
from apps.jobs.joblogs import job_log_lines_of
from apps.jobs.models import Job, JobLogLine

# The most lines a job's page shows, over all its attempts: a page of 1,000 lines per
# attempt would be slow to build and to read. The rest are a link away.
ADMIN_LOG_LINES = 200

_PRE = "white-space: pre-wrap; margin: 0"


def lines_link(job_id: object, attempt: int) -> str:
    query = urlencode({"job": str(job_id), "attempt": attempt})
    return f"{reverse('admin:jobs_joblogline_changelist')}?{query}"


def render_job_logs(job: Job, limit: int = ADMIN_LOG_LINES) -> SafeString | str:
    """The job's lines by attempt, newest attempt first; of each, its last lines while the
    page's budget lasts (the end of a failed attempt is what explains it). One query counts
    the lines of every attempt, and one per attempt shown reads them."""
    counts = dict(
        JobLogLine.objects.filter(job_id=job.pk).values_list("attempt").annotate(n=Count("id")).order_by("-attempt")
    )
    if not counts:
        return "-"
    sections = []
    budget = limit
    for attempt in sorted(counts, reverse=True):
        total = counts[attempt]
        shown = list(reversed(job_log_lines_of(job_id=job.pk, attempt=attempt).reverse()[:budget])) if budget else []
        budget -= len(shown)
        link = lines_link(job.pk, attempt)
        more = format_html(" ({} line{})", total, "" if total == 1 else "s")
        if len(shown) < total:
            more = format_html(' (the last {} shown: <a href="{}">all {} lines</a>)', len(shown), link, total)
        rows = format_html_join(
            "",
            '<tr><td style="white-space: nowrap">{}</td><td>{}</td><td>{}</td><td><pre style="{}">{}</pre></td></tr>',
            ((compact_datetime(line.at), line.level, line.logger, _PRE, line.message) for line in shown),
        )
        sections.append(format_html("<h4>Attempt {}{}</h4><table>{}</table>", attempt, more, rows))
    return format_html_join("", "{}", ((section,) for section in sections))


class JobLogLineAdmin(ScaledModelAdmin):
    """Read-only: lines are written by the workers and go with their job."""

    list_display = ["job_short", "attempt", "seq", "logged", "level", "logger", "message_pre"]
    list_display_links = None
    list_per_page = 200
    sortable_by = ()  # any other order would sort the whole table
    ordering = ["job", "attempt", "seq"]  # the unique index's order: any page is an index range
    show_full_result_count = False

    @admin.display(description="job")
    def job_short(self, line: JobLogLine) -> str:
        link = reverse("admin:jobs_job_change", args=[line.job_id])
        return format_html('<a href="{}">{}</a>', link, short_id(line.job_id))

    @admin.display(description="at")
    def logged(self, line: JobLogLine) -> str:
        return compact_datetime(line.at)

    @admin.display(description="message")
    def message_pre(self, line: JobLogLine) -> str:
        return format_html('<pre style="{}">{}</pre>', _PRE, line.message)

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        # The job page links here by job and attempt; both are served by the lines' index.
        return lookup in ("job", "attempt") or super().lookup_allowed(lookup, value, request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

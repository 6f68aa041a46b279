"""The admin's view of workflows: read-only, each with its jobs (linked to the jobs admin,
which lists a workflow's jobs with ?workflow_id=) and its graph drawn as server-side SVG."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from apps.core.admindisplay import compact_datetime, short_id
from apps.workflows import selectors
from apps.workflows.models import Workflow

# A graph larger than this is listed, not drawn: a picture of 1,000 boxes helps no one.
DRAW_MAX_JOBS = 200
_COLOURS = {
    "waiting": "#f3eefb",
    "queued": "#eef2f7",
    "running": "#e3edfb",
    "retrying": "#fff4d6",
    "succeeded": "#dcf3e3",
    "failed": "#fdecea",
    "cancelled": "#eeeeee",
}


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ("short", "name", "status", "total", "on_failure", "owner", "created", "finished")
    list_filter = ("status", "on_failure")
    search_fields = ("=id", "name")
    ordering = ("-created_at",)
    show_full_result_count = False
    list_select_related = ("owner",)
    fields = (
        "id",
        "name",
        "owner",
        "status",
        "on_failure",
        "callback_url",
        "total",
        "unfinished",
        "cancel_requested_at",
        "created_at",
        "updated_at",
        "finished_at",
        "graph",
        "jobs",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Workflow | None = None) -> bool:
        return False

    @admin.display(description="id", ordering="id")
    def short(self, workflow: Workflow) -> SafeString | str:
        return short_id(workflow.id)

    @admin.display(description="created", ordering="created_at")
    def created(self, workflow: Workflow) -> SafeString | str:
        return compact_datetime(workflow.created_at)

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, workflow: Workflow) -> SafeString | str:
        return compact_datetime(workflow.finished_at)

    @admin.display(description="jobs")
    def jobs(self, workflow: Workflow) -> SafeString:
        rows = format_html_join(
            "",
            '<tr><td>{}</td><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>',
            (
                (
                    job.ref,
                    reverse("admin:jobs_job_change", args=[job.id]),
                    job.id,
                    job.kind,
                    job.status,
                    ", ".join(job.depends_on) or "-",
                )
                for job in selectors.workflow_jobs(workflow=workflow)
            ),
        )
        listing = reverse("admin:jobs_job_changelist") + f"?workflow_id={workflow.id}"
        return format_html(
            '<p><a href="{}">Open these jobs in the jobs list</a></p><table><thead><tr><th>ref</th><th>job</th>'
            "<th>kind</th><th>status</th><th>depends on</th></tr></thead><tbody>{}</tbody></table>",
            listing,
            rows,
        )

    @admin.display(description="graph")
    def graph(self, workflow: Workflow) -> SafeString | str:
        return graph_svg(selectors.workflow_jobs(workflow=workflow))


def graph_svg(jobs: list[selectors.WorkflowJob]) -> SafeString | str:
    """The graph as SVG: a column per depth (the longest chain of dependencies before a job),
    each job a box coloured by its status, each dependency a line from left to right."""
    if len(jobs) > DRAW_MAX_JOBS:
        return f"{len(jobs)} jobs: too many to draw (at most {DRAW_MAX_JOBS}); see the list below."
    by_ref = {job.ref: job for job in jobs}
    depth: dict[str, int] = {}
    for job in jobs:  # iterative longest-path depth; the graph was checked acyclic at submit
        stack = [job.ref]
        while stack:
            ref = stack[-1]
            pending = [d for d in by_ref[ref].depends_on if d in by_ref and d not in depth]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            depth[ref] = 1 + max((depth[d] for d in by_ref[ref].depends_on if d in depth), default=-1)
    columns: dict[int, list[str]] = {}
    for job in jobs:
        columns.setdefault(depth[job.ref], []).append(job.ref)
    width, height, gap_x, gap_y = 140, 34, 60, 14
    place = {
        ref: (c * (width + gap_x), r * (height + gap_y)) for c, refs in columns.items() for r, ref in enumerate(refs)
    }
    lines = [
        format_html(
            '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#888" marker-end="url(#arrow)"/>',
            place[d][0] + width,
            place[d][1] + height // 2,
            place[job.ref][0],
            place[job.ref][1] + height // 2,
        )
        for job in jobs
        for d in job.depends_on
        if d in place
    ]
    boxes = [
        format_html(
            '<g><title>{} ({}, {})</title><rect x="{}" y="{}" width="{}" height="{}" rx="6" fill="{}" stroke="#666"/>'
            '<text x="{}" y="{}" font-size="12" font-family="sans-serif">{}</text></g>',
            job.ref,
            job.kind,
            job.status,
            place[job.ref][0],
            place[job.ref][1],
            width,
            height,
            _COLOURS.get(job.status, "#fff"),
            place[job.ref][0] + 8,
            place[job.ref][1] + 21,
            f"{job.ref[:14]} · {job.status}",
        )
        for job in jobs
    ]
    total_w = max(x for x, _ in place.values()) + width + 10
    total_h = max(y for _, y in place.values()) + height + 10
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" role="img" aria-label="workflow graph">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#888"/></marker></defs>{}{}</svg>',
        total_w,
        total_h,
        mark_safe("".join(lines)),  # each line and box was escaped by format_html
        mark_safe("".join(boxes)),
    )

"""The operations dashboard in the admin (/admin/ops/dashboard/, linked from the admin's
index): each queue's depth and oldest job, attempts per minute over the last hour as a bar
chart drawn on the server (inline SVG, no script), open dead letters, live workers, and the
control loop's leader and last sweep. Staff only; each figure is one selector, each an
index read, so the page stays fast at millions of jobs (bench/admin_dashboard.py times it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from redis.exceptions import RedisError

from apps.deadletters.selectors import dead_letter_stats
from apps.ops.control import control_loop_status
from apps.ops.metrics import QUEUES
from apps.ops.selectors import (
    MinuteFigures,
    attempts_per_minute,
    kind_pauses,
    live_workers,
    pauses_by_target,
    queue_figures,
)

admin.site.index_template = "admin/ops/index.html"  # the admin's index, with a link to the dashboard

# The chart's geometry, in SVG user units (the SVG scales to its box).
CHART_HEIGHT = 150
CHART_LEFT = 44  # room for the y axis's labels
CHART_BOTTOM = 20  # room for the x axis's labels
GROUP_WIDTH = 14  # one minute: three bars and a gap
BAR_WIDTH = 4
SERIES = (("started", "#417690"), ("succeeded", "#2e8540"), ("failed", "#ba2121"))


@dataclass(frozen=True)
class Bar:
    x: int
    y: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_height: int
    left: int
    top_value: int
    bars: list[Bar]
    ticks: list[tuple[int, str]]  # (x, "10:52") every ten minutes
    totals: dict[str, int]


def attempts_chart(minutes: list[MinuteFigures]) -> Chart:
    plot_height = CHART_HEIGHT - CHART_BOTTOM
    top = max([1, *(max(m.started, m.succeeded, m.failed) for m in minutes)])
    bars, ticks = [], []
    for i, minute in enumerate(minutes):
        x0 = CHART_LEFT + i * GROUP_WIDTH
        label = timezone.localtime(minute.minute).strftime("%H:%M")
        for j, (name, colour) in enumerate(SERIES):
            value = getattr(minute, name)
            height = round(plot_height * value / top, 1)
            bars.append(Bar(x0 + 1 + j * BAR_WIDTH, plot_height - height, height, colour, f"{label}: {value} {name}"))
        if i % 10 == 0:
            ticks.append((x0, label))
    totals = {name: sum(getattr(m, name) for m in minutes) for name, _ in SERIES}
    return Chart(
        width=CHART_LEFT + len(minutes) * GROUP_WIDTH,
        height=CHART_HEIGHT,
        plot_height=plot_height,
        left=CHART_LEFT,
        top_value=top,
        bars=bars,
        ticks=ticks,
        totals=totals,
    )


def _seconds_since(moment: datetime | None) -> float | None:
    return None if moment is None else max(0.0, (timezone.now() - moment).total_seconds())


def dashboard(request: HttpRequest) -> HttpResponse:
    try:
        workers: list[str] | None = live_workers()
    except RedisError:
        workers = None  # the page says Redis did not answer
    loop = control_loop_status()
    letters = dead_letter_stats()
    paused = pauses_by_target()
    context = {
        **admin.site.each_context(request),
        "title": "Operations dashboard",
        "queues": queue_figures(QUEUES, paused=paused),
        "kinds": kind_pauses(paused=paused),
        "can_pause": request.user.has_perm("jobs.change_pause"),
        "chart": attempts_chart(attempts_per_minute(minutes=60)),
        "series": SERIES,
        "dead_letters": letters,
        "workers": workers,
        "loop": loop,
        "loop_stale": loop.stale(settings.CONTROL_LOOP_STALE_SECONDS),
        "since_sweep": _seconds_since(loop.last_sweep_at),
        "stale_seconds": settings.CONTROL_LOOP_STALE_SECONDS,
        "now": timezone.now(),
    }
    request.current_app = admin.site.name
    return TemplateResponse(request, "admin/ops/dashboard.html", context)


dashboard_view = admin.site.admin_view(dashboard)

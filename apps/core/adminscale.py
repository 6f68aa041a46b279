"""The admin's changelist parts that read a whole table, made to read an index instead.

With a million jobs, Django's defaults spend most of a page load scanning the table: the
paginator's COUNT(*), the date hierarchy's SELECT DISTINCT DATE_TRUNC(...), and the filters'
SELECT DISTINCT for their choices. Each is replaced by what the indexes answer directly; the
choices and links shown stay the same (tests/unit/jobs/test_admin.py compares them with Django's
own), except that an unfiltered list shows the planner's row estimate instead of an exact
count."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Max, Min, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.functional import cached_property

# Below this many rows an exact COUNT(*) is cheap, and exact.
ESTIMATE_ABOVE_ROWS = 100_000


class EstimatedCountPaginator(Paginator):
    """An unfiltered list of a big table counts with PostgreSQL's own row estimate
    (pg_class.reltuples, kept by autovacuum and ANALYZE), not COUNT(*). A filtered list, or a
    small table, is counted exactly: its COUNT is served by the filter's index."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if isinstance(queryset, QuerySet) and not queryset.query.where:
            estimate = _estimated_rows(queryset)
            if estimate is not None and estimate > ESTIMATE_ABOVE_ROWS:
                return estimate
        return super().count


def _estimated_rows(queryset: QuerySet) -> int | None:
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        table = queryset.model._meta.db_table
        cursor.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table])
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None and row[0] >= 0 else None


def distinct_values(model: Any, column: str, using: str = "default") -> list[Any]:
    """The distinct non-null values of an indexed column, in order, by skipping through its
    index (a recursive CTE: one index probe per distinct value) instead of reading every row
    as SELECT DISTINCT does. A handful of kinds or owners among a million jobs costs a
    handful of probes."""
    connection = connections[using]
    q = connection.ops.quote_name
    table, col = q(model._meta.db_table), q(column)
    if connection.vendor != "postgresql":
        sql = f"SELECT DISTINCT {col} FROM {table} WHERE {col} IS NOT NULL ORDER BY 1"
    else:
        sql = (
            f"WITH RECURSIVE skip(v) AS ("
            f" (SELECT {col} FROM {table} WHERE {col} IS NOT NULL ORDER BY {col} LIMIT 1)"
            f" UNION ALL"
            f" SELECT (SELECT {col} FROM {table} WHERE {col} > skip.v ORDER BY {col} LIMIT 1) FROM skip"
            f" WHERE skip.v IS NOT NULL"
            f") SELECT v FROM skip WHERE v IS NOT NULL"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [row[0] for row in cursor.fetchall()]


class IndexedValuesFilter(admin.AllValuesFieldListFilter):
    """AllValuesFieldListFilter (same parameter, same choices), its choices read with
    distinct_values. Only for a column with an index that leads with it."""

    def __init__(self, field: Any, request: HttpRequest, params: Any, model: Any, model_admin: Any, field_path: str):
        super().__init__(field, request, params, model, model_admin, field_path)
        # The parent's lookup_choices is a lazy SELECT DISTINCT; it is never run.
        self.lookup_choices = distinct_values(model, field.column, using=model_admin.get_queryset(request).db)


class IndexedRelatedOnlyFilter(admin.RelatedOnlyFieldListFilter):
    """RelatedOnlyFieldListFilter (the related rows that appear in the list), the keys that
    appear read with distinct_values over the foreign key's index."""

    def field_choices(self, field: Any, request: HttpRequest, model_admin: Any) -> list[tuple[Any, str]]:
        keys = distinct_values(field.model, field.column, using=model_admin.get_queryset(request).db)
        ordering = self.field_admin_ordering(field, request, model_admin)
        return field.get_choices(include_blank=False, limit_choices_to={"pk__in": keys}, ordering=ordering)


class _IndexedDatesQuerySet(QuerySet):
    """datetimes() for the date hierarchy, from index probes: the range's ends (MIN and MAX
    read the ends of an index), then one EXISTS per year, month or day in between, instead
    of truncating every row's timestamp and sorting them all."""

    def datetimes(self, field_name: str, kind: str, order: str = "ASC", tzinfo: Any = None) -> Any:
        if kind not in ("year", "month", "day") or order != "ASC" or tzinfo is not None:
            return super().datetimes(field_name, kind, order, tzinfo)
        bounds = self.aggregate(first=Min(field_name), last=Max(field_name))
        if bounds["first"] is None:
            return []
        zone = timezone.get_current_timezone()
        first = timezone.localtime(bounds["first"], zone)
        last = timezone.localtime(bounds["last"], zone)
        found = []
        start = _truncate(first, kind)
        while start <= last:
            end = _next(start, kind)
            lookup = {f"{field_name}__gte": start, f"{field_name}__lt": end}
            if self.filter(**lookup).exists():
                found.append(start)
            start = end
        return found


def _truncate(moment: datetime, kind: str) -> datetime:
    if kind == "year":
        naive = datetime(moment.year, 1, 1)
    elif kind == "month":
        naive = datetime(moment.year, moment.month, 1)
    else:
        naive = datetime(moment.year, moment.month, moment.day)
    return timezone.make_aware(naive, moment.tzinfo)


def _next(start: datetime, kind: str) -> datetime:
    if kind == "year":
        naive = datetime(start.year + 1, 1, 1)
    elif kind == "month":
        days = calendar.monthrange(start.year, start.month)[1]
        naive = datetime(start.year, start.month, 1) + timedelta(days=days)
    else:
        naive = datetime(start.year, start.month, start.day) + timedelta(days=1)
    return timezone.make_aware(naive, start.tzinfo)


class IndexedChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet:
        queryset = super().get_queryset(request, exclude_parameters)
        return _IndexedDatesQuerySet(
            model=queryset.model, query=queryset.query.chain(), using=queryset.db, hints=queryset._hints
        )


class ScaledModelAdmin(admin.ModelAdmin):
    """A ModelAdmin for a table of millions: estimated count when unfiltered, an index-read
    date hierarchy, no "x of y" full count. Filters opt in with IndexedValuesFilter and
    IndexedRelatedOnlyFilter."""

    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return IndexedChangeList

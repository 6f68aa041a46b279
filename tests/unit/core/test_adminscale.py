"""The admin at scale (apps.core.adminscale): the parts Django would compute by reading the
whole table give the same choices and links when read from the indexes, and an unfiltered
list of a big table is never counted with COUNT(*)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.models import QuerySet
from django.test.utils import CaptureQueriesContext

from apps.core import adminscale
from apps.core.adminscale import _IndexedDatesQuerySet, distinct_values
from apps.deadletters.models import DeadLetter
from apps.jobs.models import Job, JobStatus
from tests.factories import JobFactory, UserFactory

JOBS = "/admin/jobs/job/"
LETTERS = "/admin/deadletters/deadletter/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def spread(db):
    """Jobs over two years, several months and days, for three owners and three kinds."""
    owners = [UserFactory() for _ in range(3)]
    moments = [
        _at(2025, 12, 31, 23, 59),
        _at(2026, 1, 1, 0, 0),
        _at(2026, 1, 15, 12),
        _at(2026, 3, 3, 3),
        _at(2026, 3, 3, 22),
        _at(2026, 3, 31, 23, 59, 59),
        _at(2026, 11, 22, 8),
    ]
    kinds = ["diagnostics.noop", "diagnostics.sleep", "images.thumbnail"]
    jobs = []
    for i, moment in enumerate(moments):
        job = JobFactory(owner=owners[i % 2], kind=kinds[i % 3], status=JobStatus.FAILED if i % 2 else JobStatus.QUEUED)
        Job.objects.filter(id=job.id).update(created_at=moment)
        jobs.append(job)
    return jobs


def _indexed(queryset: QuerySet) -> _IndexedDatesQuerySet:
    return _IndexedDatesQuerySet(model=queryset.model, query=queryset.query.chain(), using=queryset.db)


@pytest.mark.parametrize("kind", ["year", "month", "day"])
@pytest.mark.parametrize(
    "filters",
    [{}, {"status": JobStatus.FAILED}, {"created_at__gte": _at(2026, 3, 1), "created_at__lt": _at(2026, 4, 1)}],
)
def test_the_date_hierarchy_finds_the_same_dates_as_django(spread, kind, filters):
    queryset = Job.objects.filter(**filters)
    assert list(_indexed(queryset).datetimes("created_at", kind)) == list(queryset.datetimes("created_at", kind))


def test_the_date_hierarchy_of_an_empty_list_is_empty(db):
    assert _indexed(Job.objects.all()).datetimes("created_at", "day") == []


def test_distinct_values_are_djangos_distinct_values(spread):
    for column, field in (("kind", "kind"), ("owner_id", "owner_id")):
        expected = list(Job.objects.order_by(field).values_list(field, flat=True).distinct())
        assert distinct_values(Job, column) == expected


def test_the_filters_offer_the_kinds_and_owners_that_have_jobs(admin_client, spread):
    nobody = UserFactory(username="no-jobs-at-all")
    response = admin_client.get(JOBS)
    assert response.status_code == 200
    filters = {
        spec.title: [c["display"] for c in spec.choices(response.context["cl"])]
        for spec in response.context["cl"].filter_specs
    }
    assert filters["kind"][1:] == ["diagnostics.noop", "diagnostics.sleep", "images.thumbnail"]
    owners = {spread[0].owner.username, spread[1].owner.username}
    assert set(filters["owner"][1:]) == owners
    assert nobody.username not in filters["owner"]


def test_a_drilled_down_date_hierarchy_lists_the_days_with_jobs(admin_client, spread):
    response = admin_client.get(JOBS, {"created_at__year": "2026", "created_at__month": "3"})
    assert response.status_code == 200
    days = {int(day) for day in re.findall(r"created_at__day=(\d+)", response.content.decode())}
    assert days == {3, 31}


def test_an_unfiltered_big_table_is_not_counted_but_a_filtered_list_is(admin_client, spread, monkeypatch):
    monkeypatch.setattr(adminscale, "ESTIMATE_ABOVE_ROWS", 0)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE jobs_job")

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(JOBS)
    assert response.status_code == 200
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(*)" in q["sql"] and "jobs_job" in q["sql"]]
    assert counts == []
    assert response.context["cl"].result_count == len(spread)  # ANALYZE saw every row

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(JOBS, {"status__exact": "failed"})
    assert response.status_code == 200
    assert any("COUNT(*)" in q["sql"] for q in queries.captured_queries)
    assert response.context["cl"].result_count == 3


def test_dead_letters_are_found_by_job_id_kind_or_error_type_exactly(admin_client):
    first, second = JobFactory(status=JobStatus.FAILED), JobFactory(status=JobStatus.FAILED, kind="images.thumbnail")
    a = DeadLetter.objects.create(job=first, kind=first.kind, error_type="KeyError")
    b = DeadLetter.objects.create(job=second, kind=second.kind, error_type="ValueError")

    def found(term: str) -> list[int]:
        response = admin_client.get(LETTERS, {"q": term})
        assert response.status_code == 200
        return sorted(letter.pk for letter in response.context["cl"].result_list)

    assert found(str(first.id)) == [a.pk]
    assert found("images.thumbnail") == [b.pk]
    assert found("KeyError") == [a.pk]
    assert found("not-a-uuid-nor-a-kind") == []

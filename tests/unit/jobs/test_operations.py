"""A bulk operation under a time budget (as beat runs it, bulk_operations_advance): it stops
after the chunk that spends the budget, keeps its cursor, and the next call resumes after it,
never acting on a row twice."""

from __future__ import annotations

import pytest

from apps.jobs import operations
from apps.jobs.models import BulkOperation, Job, JobStatus
from tests.factories import JobFactory, UserFactory


@pytest.fixture
def five_queued_jobs(db) -> list[Job]:
    owner = UserFactory(username="bulk-budget-client")
    jobs = [JobFactory(owner=owner, kind="diagnostics.noop", status=JobStatus.QUEUED) for _ in range(5)]
    JobFactory(owner=owner, kind="diagnostics.sleep", status=JobStatus.QUEUED, payload={"seconds": 1})  # not matched
    return sorted(jobs, key=lambda job: job.pk)


def cancelled_ids() -> set[str]:
    return {str(pk) for pk in Job.objects.filter(status=JobStatus.CANCELLED).values_list("pk", flat=True)}


def test_a_bulk_operation_stops_on_its_time_budget_and_resumes_from_its_cursor(five_queued_jobs, monkeypatch):
    monkeypatch.setattr(operations, "CHUNK", 2)
    ids = [str(job.pk) for job in five_queued_jobs]
    operation = operations.bulk_operation_start(
        action=BulkOperation.Action.CANCEL, target="jobs", filters="kind=diagnostics.noop", actor="ops"
    )

    # A budget spent before the first chunk ends: one chunk, then it stops with its place kept.
    first = operations.bulk_operation_run(operation_id=operation.pk, budget_seconds=0)
    assert (first.state, first.total, first.processed, first.changed) == ("running", 5, 2, 2)
    assert first.cursor == ids[1]
    assert first.finished_at is None
    assert cancelled_ids() == set(ids[:2])

    # The next call starts after the cursor, read back from the database.
    second = operations.bulk_operation_run(operation_id=operation.pk, budget_seconds=0)
    assert (second.state, second.processed, second.changed, second.cursor) == ("running", 4, 4, ids[3])
    assert cancelled_ids() == set(ids[:4])

    done = operations.bulk_operation_run(operation_id=operation.pk)
    assert (done.state, done.total, done.processed, done.changed) == ("done", 5, 5, 5)
    assert done.message == "5 of 5 changed"
    assert done.finished_at is not None
    assert cancelled_ids() == set(ids)  # and the job of another kind is left queued

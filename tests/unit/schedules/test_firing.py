"""Firing: one job per firing, made and recorded in one transaction by the leader; a missed
run of ticks fires once; the database refuses a second job for the same firing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction

from apps.jobs.models import Job, JobStatus
from apps.ops.control import NotLeader
from apps.schedules import firing, services
from apps.schedules.models import Schedule
from tests.factories import JobFactory
from tests.unit.schedules.helpers import T0, make

pytestmark = pytest.mark.django_db


def jobs_of(schedule: Schedule) -> list[Job]:
    return list(Job.objects.filter(schedule_id=schedule.pk).order_by("scheduled_for"))


def test_a_due_schedule_makes_one_job_for_its_time(user):
    schedule = make(user, every_seconds=10, kind="diagnostics.sleep", payload={"seconds": 0.1})
    due = schedule.next_run_at
    assert firing.schedules_fire_due(now=due + timedelta(milliseconds=200)) == 1
    [job] = jobs_of(schedule)
    assert (job.kind, job.payload, job.owner_id) == ("diagnostics.sleep", {"seconds": 0.1}, user.pk)
    assert job.status == JobStatus.QUEUED
    assert job.scheduled_for == due
    schedule.refresh_from_db()
    assert schedule.next_run_at == due + timedelta(seconds=10)
    assert (schedule.last_scheduled_for, schedule.last_job_id, schedule.last_error) == (due, job.pk, "")


def test_nothing_is_fired_before_its_time_or_when_disabled(user):
    schedule = make(user, every_seconds=10)
    assert firing.schedules_fire_due(now=schedule.next_run_at - timedelta(milliseconds=1)) == 0
    services.schedule_set_enabled(schedule=schedule, enabled=False, now=T0)
    assert firing.schedules_fire_due(now=T0 + timedelta(hours=1)) == 0
    assert jobs_of(schedule) == []


def test_a_sweep_that_finds_nothing_due_costs_one_query(user, django_assert_num_queries):
    make(user, every_seconds=10)
    with django_assert_num_queries(1):
        assert firing.schedules_fire_due(now=T0) == 0


def test_missed_ticks_fire_once_on_catching_up(user):
    schedule = make(user, every_seconds=10)
    first_due = schedule.next_run_at
    late = first_due + timedelta(seconds=65)  # six ticks missed (no beat ran)
    assert firing.schedules_fire_due(now=late) == 1
    assert firing.schedules_fire_due(now=late + timedelta(seconds=1)) == 0
    [job] = jobs_of(schedule)
    assert job.scheduled_for == first_due
    schedule.refresh_from_db()
    assert schedule.next_run_at == first_due + timedelta(seconds=70)  # the grid's next time after now


def test_a_cron_schedule_catches_up_once_too(user):
    schedule = make(user, cron="0 * * * *")
    late = schedule.next_run_at + timedelta(hours=5, minutes=10)
    assert firing.schedules_fire_due(now=late) == 1
    assert firing.schedules_fire_due(now=late) == 0
    schedule.refresh_from_db()
    assert schedule.next_run_at == late.replace(minute=0) + timedelta(hours=1)


def test_the_database_refuses_a_second_job_for_the_same_firing(user):
    schedule = make(user)
    JobFactory(owner=user, schedule_id=schedule.pk, scheduled_for=schedule.next_run_at)
    with pytest.raises(IntegrityError), transaction.atomic():
        JobFactory(owner=user, schedule_id=schedule.pk, scheduled_for=schedule.next_run_at)
    # Jobs outside any schedule are not constrained.
    JobFactory(owner=user)
    JobFactory(owner=user)


def test_a_firing_whose_job_exists_already_makes_no_second_one_and_moves_on(user):
    schedule = make(user, every_seconds=10)
    due = schedule.next_run_at
    JobFactory(owner=user, schedule_id=schedule.pk, scheduled_for=due)  # as if another beat made it
    assert firing.schedules_fire_due(now=due + timedelta(seconds=1)) == 0
    assert len(jobs_of(schedule)) == 1
    schedule.refresh_from_db()
    assert schedule.next_run_at == due + timedelta(seconds=10)


def test_a_beat_that_lost_the_lead_fires_nothing(user):
    schedule = make(user, every_seconds=10)

    def fence() -> None:
        raise NotLeader("another beat leads")

    with pytest.raises(NotLeader):
        firing.schedules_fire_due(now=schedule.next_run_at + timedelta(seconds=1), fence=fence)
    assert jobs_of(schedule) == []
    schedule.refresh_from_db()
    assert schedule.next_run_at == T0 + timedelta(seconds=10)


def test_a_firing_the_kind_now_refuses_makes_no_job_and_says_why(user):
    schedule = make(user, kind="diagnostics.sleep", payload={"seconds": 1})
    Schedule.objects.filter(pk=schedule.pk).update(payload={"seconds": "soon"})
    assert firing.schedules_fire_due(now=schedule.next_run_at + timedelta(seconds=1)) == 0
    schedule.refresh_from_db()
    assert "seconds" in schedule.last_error
    assert schedule.next_run_at > T0 + timedelta(seconds=10)  # it moved on all the same


def test_many_due_schedules_fire_in_batches(user, monkeypatch):
    monkeypatch.setattr(firing, "BATCH", 3)
    schedules = [make(user, every_seconds=10) for _ in range(7)]
    assert firing.schedules_fire_due(now=T0 + timedelta(seconds=11)) == 7
    assert all(len(jobs_of(s)) == 1 for s in schedules)


def test_run_now_makes_a_job_and_leaves_the_timing_alone(user):
    schedule = make(user, every_seconds=3600)
    job = firing.schedule_run_now(schedule=schedule, now=T0 + timedelta(seconds=5))
    assert job is not None
    assert job.scheduled_for == T0 + timedelta(seconds=5)
    schedule.refresh_from_db()
    assert schedule.next_run_at == T0 + timedelta(seconds=3600)
    assert schedule.last_job_id == job.pk


def test_the_jobs_a_schedule_made_stay_when_it_is_deleted(user):
    schedule = make(user)
    firing.schedules_fire_due(now=schedule.next_run_at)
    services.schedule_delete(schedule=schedule)
    assert len(jobs_of(schedule)) == 1

"""Making and changing schedules: every check at once, with the platform's error codes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apps.core.errors import InvalidInput
from apps.jobs.lifecycle import PriorityNotAllowed
from apps.schedules import services
from tests.unit.schedules.helpers import T0, make

pytestmark = pytest.mark.django_db


def code_of(call) -> str:
    with pytest.raises((InvalidInput, PriorityNotAllowed)) as caught:
        call()
    return caught.value.code


def test_a_new_interval_schedule_is_due_one_interval_later(user):
    schedule = make(user, every_seconds=10)
    assert schedule.next_run_at == T0 + timedelta(seconds=10)
    assert schedule.enabled


def test_a_new_cron_schedule_is_due_at_its_next_time_in_its_zone(user):
    schedule = make(user, cron="0 9 * * *", timezone_name="Europe/Berlin")
    assert schedule.next_run_at == datetime(2026, 6, 2, 7, 0, tzinfo=UTC)
    assert schedule.every_seconds is None


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"cron": "61 * * * *"}, "invalid_cron"),
        ({"cron": "* * * *"}, "invalid_cron"),
        ({"cron": "0 9 * * *", "timezone_name": "Mars/Olympus"}, "invalid_timezone"),
        ({"cron": "0 9 * * *", "every_seconds": 60}, "invalid_timing"),
        ({"cron": None, "every_seconds": None}, "invalid_timing"),
        ({"every_seconds": 0}, "invalid_every_seconds"),
        ({"every_seconds": -1}, "invalid_every_seconds"),
        ({"every_seconds": 5, "kind": "diagnostics.sleep", "payload": {"seconds": -1}}, "invalid_payload"),
        ({"every_seconds": 5, "kind": "no.such.kind"}, "unknown_kind"),
        ({"every_seconds": 5, "payload": []}, "invalid_payload"),
    ],
)
def test_a_bad_schedule_is_refused_with_its_code(user, fields, code):
    assert code_of(lambda: make(user, **fields)) == code


def test_an_internal_kind_is_refused_from_a_client_as_an_unknown_one(user):
    call = lambda: make(user, kind="webhooks.deliver", payload={}, from_client=True)  # noqa: E731
    assert code_of(call) == "unknown_kind"


def test_a_client_may_not_ask_for_high_priority_unless_allowed(user, settings):
    settings.HIGH_PRIORITY_CLIENTS = []
    call = lambda: make(user, priority="high", from_client=True)  # noqa: E731
    assert code_of(call) == "priority_not_allowed"


def test_switching_from_interval_to_cron_with_one_field(user):
    schedule = make(user, every_seconds=10)
    later = T0 + timedelta(hours=1)
    changed = services.schedule_update(schedule=schedule, changes={"cron": "0 9 * * *"}, now=later)
    assert (changed.cron, changed.every_seconds) == ("0 9 * * *", None)
    assert changed.next_run_at == datetime(2026, 6, 2, 9, 0, tzinfo=UTC)


def test_a_patch_is_checked_as_a_whole(user):
    schedule = make(user, kind="diagnostics.sleep", payload={"seconds": 1})
    call = lambda: services.schedule_update(schedule=schedule, changes={"payload": {"seconds": -3}})  # noqa: E731
    assert code_of(call) == "invalid_payload"


def test_enabling_again_does_not_run_what_was_missed(user):
    schedule = make(user, every_seconds=10)
    services.schedule_set_enabled(schedule=schedule, enabled=False, now=T0 + timedelta(seconds=1))
    back = T0 + timedelta(hours=2)
    schedule = services.schedule_set_enabled(schedule=schedule, enabled=True, now=back)
    assert schedule.enabled
    assert schedule.next_run_at == back + timedelta(seconds=10)


def test_disabling_checks_nothing_else(user, monkeypatch):
    schedule = make(user, kind="diagnostics.sleep", payload={"seconds": 1})
    # The kind's schema changed since: the schedule can still be stopped.
    schedule.payload = {"seconds": "no longer valid"}
    schedule.save(update_fields=["payload"])
    assert services.schedule_set_enabled(schedule=schedule, enabled=False).enabled is False

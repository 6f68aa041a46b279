"""Next-run arithmetic with a fixed clock: cron in a time zone through both daylight-saving
changes, intervals on their grid, and a run of missed ticks collapsing into one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from apps.core.errors import InvalidInput
from apps.schedules import timing

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fire_times(cron: str, zone: str, start: datetime, until: datetime) -> list[datetime]:
    """What the leader would fire between two moments, advancing as it does."""
    times, now = [], start
    due = timing.cron_next(cron, zone, after=now)
    while due <= until:
        times.append(due)
        now = due + timedelta(milliseconds=300)  # the sweep that fires it runs a little after
        due = timing.cron_next(cron, zone, after=now)
    return times


def test_a_cron_time_is_found_in_the_schedules_zone():
    after = utc(2026, 6, 1, 12, 0)
    assert timing.cron_next("0 9 * * *", "Europe/Berlin", after=after) == utc(2026, 6, 2, 7, 0)
    assert timing.cron_next("0 9 * * *", "UTC", after=after) == utc(2026, 6, 2, 9, 0)


def test_the_next_time_is_strictly_after_now():
    assert timing.cron_next("*/5 * * * *", "UTC", after=utc(2026, 6, 1, 12, 5)) == utc(2026, 6, 1, 12, 10)


def test_a_time_skipped_by_spring_forward_fires_once_at_the_next_valid_instant():
    # Europe/Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST; 02:30 never happens that day.
    times = fire_times("30 2 * * *", "Europe/Berlin", utc(2026, 3, 27, 12, 0), utc(2026, 3, 31, 12, 0))
    local = [t.astimezone(BERLIN).strftime("%m-%d %H:%M %Z") for t in times]
    assert local == ["03-28 02:30 CET", "03-29 03:00 CEST", "03-30 02:30 CEST", "03-31 02:30 CEST"]


def test_a_time_that_happens_twice_in_fall_back_fires_once():
    # Europe/Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    times = fire_times("30 2 * * *", "Europe/Berlin", utc(2026, 10, 23, 12, 0), utc(2026, 10, 27, 12, 0))
    assert times == [
        utc(2026, 10, 24, 0, 30),
        utc(2026, 10, 25, 0, 30),
        utc(2026, 10, 26, 1, 30),
        utc(2026, 10, 27, 1, 30),
    ]


def test_from_inside_the_repeated_hour_the_first_pass_is_not_fired_again():
    # 02:40 CET on the fall-back day is the second pass; the 02:30 of the first pass is past.
    second_pass = datetime(2026, 10, 25, 2, 40, tzinfo=BERLIN, fold=1)
    assert second_pass.astimezone(UTC) == utc(2026, 10, 25, 1, 40)
    assert timing.cron_next("30 2 * * *", "Europe/Berlin", after=second_pass) == utc(2026, 10, 26, 1, 30)
    early_second_pass = datetime(2026, 10, 25, 2, 10, tzinfo=BERLIN, fold=1)
    assert timing.cron_next("30 2 * * *", "Europe/Berlin", after=early_second_pass) == utc(2026, 10, 26, 1, 30)


def test_new_york_daylight_saving_days():
    # 2026-03-08: 02:00 EST -> 03:00 EDT; 2026-11-01: 02:00 EDT -> 01:00 EST.
    spring = fire_times("15 2 * * *", "America/New_York", utc(2026, 3, 7, 12), utc(2026, 3, 9, 12))
    assert [t.astimezone(NEW_YORK).strftime("%d %H:%M") for t in spring] == ["08 03:00", "09 02:15"]
    fall = fire_times("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12), utc(2026, 11, 2, 12))
    assert [t.astimezone(NEW_YORK).strftime("%d %H:%M %Z") for t in fall] == ["01 01:30 EDT", "02 01:30 EST"]


def test_an_hourly_cron_follows_real_time_through_the_repeated_hour():
    # Finer than daily at a fixed time: each real hour fires, both passes of 01:00 included.
    times = fire_times("0 * * * *", "America/New_York", utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 7, 30))
    assert times == [utc(2026, 11, 1, 5), utc(2026, 11, 1, 6), utc(2026, 11, 1, 7)]


def test_an_interval_keeps_its_grid_and_collapses_missed_ticks_into_one():
    due = utc(2026, 6, 1, 12, 0, 0)
    assert timing.every_next(10, due=None, after=due) == utc(2026, 6, 1, 12, 0, 10)
    # Fired 0.4 s late: the next stays on the grid.
    assert timing.every_next(10, due=due, after=due + timedelta(seconds=0.4)) == utc(2026, 6, 1, 12, 0, 10)
    # Fired 35 s late (three ticks missed): next is the first grid time after now, not 12:00:10.
    assert timing.every_next(10, due=due, after=due + timedelta(seconds=35)) == utc(2026, 6, 1, 12, 0, 40)
    # Exactly on a grid time: strictly after.
    assert timing.every_next(10, due=due, after=due + timedelta(seconds=30)) == utc(2026, 6, 1, 12, 0, 40)


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("* * * *", "five fields"),
        ("0 0 0 * * *", "five fields"),
        ("61 * * * *", "Bad minute"),
        ("* 25 * * *", "Bad hour"),
        ("0 0 31 2 *", "day-of-month"),
        ("nonsense at all here ok", "not valid"),
        ("", "five fields"),
    ],
)
def test_a_bad_cron_is_refused(expression, fragment):
    with pytest.raises(InvalidInput) as caught:
        timing.cron_check(expression, now=utc(2026, 1, 1))
    assert caught.value.code == "invalid_cron"
    assert fragment in caught.value.message


def test_a_cron_is_normalised():
    assert timing.cron_check("  0  9 *  * 1-5 ", now=utc(2026, 1, 1)) == "0 9 * * 1-5"


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../../etc/passwd", "Europe/Berlin\x00", "x" * 100])
def test_a_bad_time_zone_is_refused(name):
    with pytest.raises(InvalidInput) as caught:
        timing.timezone_check(name)
    assert caught.value.code == "invalid_timezone"


@pytest.mark.parametrize("value", [0, -5, True, 1.5, "10", timing.EVERY_SECONDS_MAX + 1])
def test_a_bad_interval_is_refused(value):
    with pytest.raises(InvalidInput) as caught:
        timing.every_seconds_check(value)
    assert caught.value.code == "invalid_every_seconds"


def test_the_timing_in_words():
    assert timing.describe(cron="0 9 * * 1-5", every_seconds=None) == "At 09:00 on Monday through Friday"
    assert timing.describe(cron="30 2 * * *", every_seconds=None, timezone="Europe/Berlin") == (
        "At 02:30 every day (Europe/Berlin)"
    )
    assert timing.describe(cron="", every_seconds=1) == "Every second"
    assert timing.describe(cron="", every_seconds=120) == "Every 2 minutes"
    assert timing.describe(cron="", every_seconds=90) == "Every 90 seconds"


def test_the_next_five_runs():
    runs = timing.upcoming_runs(cron="0 9 * * *", timezone="UTC", every_seconds=None, start=utc(2026, 6, 1, 9))
    assert runs == [utc(2026, 6, d, 9) for d in range(1, 6)]

"""When a schedule fires: pure functions of the schedule's timing and an explicit `now`, so
tests pass a fixed clock and nothing here reads the time itself.

Cron expressions are parsed and evaluated by cronsim (the library healthchecks.io runs on),
which follows Debian's cron through daylight-saving changes: a job at a specific time (both
the minute and the hour fields fixed, e.g. `30 2 * * *`) whose wall-clock time is skipped by
the spring-forward runs at the first valid instant after it (03:00 that day), and one whose
time happens twice in the fall-back runs once, at the first occurrence. Expressions that run
more often than hourly (`*/15 * * * *`, `0 * * * *`) follow real time: every 15 minutes of
elapsed time, both passes of a repeated hour included. https://github.com/cuu508/cronsim
("DST Transitions")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from apps.core.errors import InvalidInput

CRON_MAX_LENGTH = 200
TIMEZONE_MAX_LENGTH = 64
EVERY_SECONDS_MAX = 366 * 24 * 3600
# The run times the admin shows, and how many cron matches next_run_after steps past at most
# when cronsim hands back a time at or before `after` (see there).
PREVIEW_RUNS = 5
_MAX_STEPS = 1000


def timezone_check(name: str) -> ZoneInfo:
    """An IANA time zone by name (`Europe/Berlin`, `UTC`), or 400 invalid_timezone."""
    if not isinstance(name, str) or not name or len(name) > TIMEZONE_MAX_LENGTH or "\x00" in name:
        raise _bad_zone(name)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise _bad_zone(name) from None


def _bad_zone(name: object) -> InvalidInput:
    return InvalidInput(
        f"timezone {str(name)[:70]!r} is not an IANA time zone name (such as UTC or Europe/Berlin).",
        code="invalid_timezone",
    )


def cron_check(expression: str, *, now: datetime) -> str:
    """A five-field cron expression (minute hour day-of-month month day-of-week), normalised
    to single spaces, or 400 invalid_cron naming what is wrong."""
    if not isinstance(expression, str) or len(expression) > CRON_MAX_LENGTH or "\x00" in expression:
        raise InvalidInput(f"cron must be a text of at most {CRON_MAX_LENGTH} characters.", code="invalid_cron")
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidInput(
            f"cron must have five fields (minute hour day-of-month month day-of-week); {expression[:70]!r} "
            f"has {len(fields)}.",
            code="invalid_cron",
            details={"fields": len(fields)},
        )
    normal = " ".join(fields)
    try:
        next(CronSim(normal, now.astimezone(UTC)))
    except CronSimError as exc:
        raise InvalidInput(f"cron {normal[:70]!r} is not valid: {exc}.", code="invalid_cron") from None
    except StopIteration:
        raise InvalidInput(f"cron {normal[:70]!r} never matches a date.", code="invalid_cron") from None
    return normal


def every_seconds_check(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= EVERY_SECONDS_MAX:
        raise InvalidInput(
            f"every_seconds must be a whole number from 1 to {EVERY_SECONDS_MAX}.",
            code="invalid_every_seconds",
            details={"min": 1, "max": EVERY_SECONDS_MAX},
        )
    return value


def cron_next(expression: str, zone: str, *, after: datetime) -> datetime:
    """The first time strictly after `after` that the cron expression matches in `zone`,
    in UTC. cronsim evaluates fixed-time expressions on the local wall clock; from a moment
    inside a fall-back's second pass it may answer the first pass's match, already past:
    such an answer is stepped over, so a repeated wall-clock time never fires twice."""
    local = after.astimezone(ZoneInfo(zone))
    it = CronSim(expression, local)
    for _ in range(_MAX_STEPS):
        candidate = next(it).astimezone(UTC)
        if candidate > after:
            return candidate
    raise InvalidInput(f"cron {expression!r} has no time after {after.isoformat()}.", code="invalid_cron")


def every_next(every_seconds: int, *, due: datetime | None, after: datetime) -> datetime:
    """An interval schedule's next firing: the first is one interval after `after`; later
    ones keep the grid of the previous due time (due + k * interval), so a late sweep does
    not drift the schedule, and a run of missed ticks collapses into the next one after
    `after` (the missed firing itself runs once, from the due time it had)."""
    step = timedelta(seconds=every_seconds)
    if due is None:
        return after + step
    if due > after:
        return due
    missed = (after - due) // step
    return due + (missed + 1) * step


def next_run_after(
    *, cron: str, timezone: str, every_seconds: int | None, due: datetime | None, after: datetime
) -> datetime:
    """The schedule's next firing strictly after `after` (a cron schedule) or on its grid
    (an interval schedule; `due` is the firing it advances from, None for a new one)."""
    if every_seconds is not None:
        return every_next(every_seconds, due=due, after=after)
    return cron_next(cron, timezone, after=after)


def upcoming_runs(
    *, cron: str, timezone: str, every_seconds: int | None, start: datetime, count: int = PREVIEW_RUNS
) -> list[datetime]:
    """The first `count` firings from `start` (the next due time) on: the admin's preview."""
    runs = [start]
    while len(runs) < count:
        last = runs[-1]
        runs.append(next_run_after(cron=cron, timezone=timezone, every_seconds=every_seconds, due=last, after=last))
    return runs


def describe(*, cron: str, every_seconds: int | None, timezone: str = "UTC") -> str:
    """The timing in words: cronsim's own explanation of a cron expression (the raw
    expression when it offers none), or the interval."""
    if every_seconds is not None:
        return f"Every {_duration(every_seconds)}"
    try:
        words = CronSim(cron, datetime(2000, 1, 1)).explain()
    except Exception:  # an explanation is a courtesy; the expression itself always shows
        words = cron
    return f"{words} ({timezone})" if timezone != "UTC" else words


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return unit if n == 1 else f"{n} {unit}s"
    return "second" if seconds == 1 else f"{seconds} seconds"

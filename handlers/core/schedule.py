"""Schedules: five-field cron, its next firing, and the event a firing publishes.

One spelling (unix cron, UTC) is declared in the app description; Cloud Scheduler takes
it as it is, EventBridge Scheduler needs its six-field dialect (`aws_cron`), and the local
timer computes firings with `next_fire`. The event a firing publishes is built in one
place (`fired_event`), with an id derived from (schedule, slot): the platforms promise
at-least-once firing, and a second firing for the same slot must be a duplicate.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from handlers.core.errors import ValidationError
from handlers.core.events import Event
from handlers.core.values import valueclass

if TYPE_CHECKING:
    from handlers.core.app import Catalog, Schedule

_FIELDS: Final = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31),
                  ("month", 1, 12), ("day of week", 0, 6))
_DAY_NAMES: Final = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAMESPACE: Final = uuid.UUID("0b7f6a5e-4c1d-4f0e-9a63-5be2a8c4d7a1")
#: How far `next_fire` looks ahead; every valid five-field cron fires within 4 years.
_HORIZON: Final = timedelta(days=4 * 366)


@valueclass
class Cron:
    """A parsed five-field cron: the values each field allows."""

    __slots__ = ("minutes", "hours", "days", "months", "weekdays", "any_day", "any_weekday")

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day-of-month was `*`
    any_weekday: bool  # day-of-week was `*`

    def __init__(self, minutes: frozenset[int], hours: frozenset[int], days: frozenset[int],
                 months: frozenset[int], weekdays: frozenset[int], any_day: bool,
                 any_weekday: bool) -> None:
        _set = object.__setattr__
        _set(self, "minutes", minutes)
        _set(self, "hours", hours)
        _set(self, "days", days)
        _set(self, "months", months)
        _set(self, "weekdays", weekdays)
        _set(self, "any_day", any_day)
        _set(self, "any_weekday", any_weekday)

    def matches(self, at: datetime) -> bool:
        return (at.minute in self.minutes and at.hour in self.hours
                and at.month in self.months and _day_possible(self, at))


def _field(text: str, name: str, low: int, high: int, problems: list[str]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) < 1:
                problems.append(f"{name}: step '{step_text}' must be a positive integer")
                continue
            step = int(step_text)
        if base == "*":
            first, last = low, high
        else:
            first_text, _, last_text = base.partition("-")
            bounds = []
            for value in (first_text, last_text or first_text):
                upper = value.upper()
                if name == "day of week" and upper in _DAY_NAMES:
                    bounds.append(_DAY_NAMES.index(upper))
                elif value.isdigit():
                    bounds.append(int(value))
                else:
                    problems.append(f"{name}: '{value}' is not a number")
                    break
            if len(bounds) != 2:
                continue
            first, last = bounds
            if name == "day of week" and last == 7:
                last = 6 if first <= 6 else 0  # 7 is Sunday too
                if first == 7:
                    first = 0
            if not (low <= first <= high and low <= last <= high) or first > last:
                problems.append(f"{name}: '{base}' is outside {low}-{high}")
                continue
        values.update(range(first, last + 1, step))
    return frozenset(values)


def parse_cron(expression: str) -> Cron:
    """A five-field unix cron (minute hour day-of-month month day-of-week), or a
    `ValidationError` naming every bad field."""
    problems: list[str] = []
    parts = expression.split()
    if len(parts) != 5:
        raise ValidationError(f"cron '{expression}' must have 5 fields "
                              "(minute hour day-of-month month day-of-week)",
                              [f"got {len(parts)} fields"])
    sets = [_field(text, name, low, high, problems)
            for text, (name, low, high) in zip(parts, _FIELDS, strict=True)]
    if problems:
        raise ValidationError(f"cron '{expression}' is invalid", problems)
    minutes, hours, days, months, weekdays = sets
    return Cron(minutes, hours, days, months, weekdays,
                any_day=parts[2] == "*", any_weekday=parts[4] == "*")


def cron_problems(expression: str) -> list[str]:
    try:
        parse_cron(expression)
    except ValidationError as error:
        return [str(error)]
    return []


def next_fire(expression: str, after: datetime) -> datetime:
    """The first minute strictly after `after` (UTC) that the cron names."""
    cron = parse_cron(expression)
    at = after.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    end = at + _HORIZON
    while at < end:
        if at.month not in cron.months:
            at = (at.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
        elif not _day_possible(cron, at):
            at = (at + timedelta(days=1)).replace(hour=0, minute=0)
        elif at.hour not in cron.hours:
            at = (at + timedelta(hours=1)).replace(minute=0)
        elif at.minute in cron.minutes:
            return at
        else:
            at += timedelta(minutes=1)
    raise ValidationError(f"cron '{expression}' never fires (e.g. February 30th)")


def _day_possible(cron: Cron, at: datetime) -> bool:
    # Unix cron: when both day fields are restricted, either one matching is enough.
    day_ok = at.day in cron.days
    weekday_ok = (at.isoweekday() % 7) in cron.weekdays
    if cron.any_day or cron.any_weekday:
        return day_ok and weekday_ok
    return day_ok or weekday_ok


def aws_cron(expression: str) -> str:
    """EventBridge Scheduler's `cron(...)`: six fields, `?` in one day field, and
    day-of-week 1-7 from Sunday (unix counts 0-6), so days of week are written as names."""
    cron = parse_cron(expression)
    minute, hour, day, month, weekday = expression.split()
    if weekday == "*":
        weekday = "?"
    elif day == "*":
        day = "?"
        weekday = ",".join(_DAY_NAMES[d] for d in sorted(cron.weekdays))
    else:
        raise ValidationError(f"cron '{expression}' restricts both day-of-month and "
                              "day-of-week; EventBridge Scheduler cannot express that")
    return f"cron({minute} {hour} {day} {month} {weekday} *)"


def slot_iso(at: datetime) -> str:
    """A slot as RFC 3339 UTC; milliseconds only when a test interval needs them."""
    at = at.astimezone(UTC)
    if at.microsecond:
        return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def fired_data(schedule: Schedule, scheduled_time: str) -> dict[str, Any]:
    """What a firing carries: the declared data, the schedule's name and its slot."""
    return {**schedule.data, "schedule": schedule.name, "scheduled_time": scheduled_time}


def fired_event_id(schedule_name: str, scheduled_time: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{schedule_name}@{scheduled_time}"))


def fired_event(schedule: Schedule, catalog: Catalog, scheduled_time: str) -> Event:
    """The event one firing publishes (validated against the catalog like any other)."""
    spec = catalog[schedule.emits]
    data = fired_data(schedule, scheduled_time)
    catalog.check_data(schedule.emits, data)
    return Event(id=fired_event_id(schedule.name, scheduled_time), source=spec.source,
                 type=spec.type, data=data, time=scheduled_time, subject=schedule.name,
                 datacontenttype="application/json")


def schedule_for(schedules: Mapping[str, Schedule], name: str) -> Schedule:
    try:
        return schedules[name]
    except KeyError:
        raise ValidationError(f"no schedule named '{name}' (have: "
                              f"{', '.join(sorted(schedules)) or 'none'})") from None

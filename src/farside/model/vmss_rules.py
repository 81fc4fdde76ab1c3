"""Snapshot schedules' rules (xapi_vmss.ml): valid schedules, and when a schedule is due.

Times are UTC (xapi reads a schedule in the pool master's local time zone; Farside's servers run
in UTC). No I/O here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from farside.errors import InvalidValue

MIN_RETAINED, MAX_RETAINED = 1, 10
MINUTES = ("0", "15", "30", "45")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# The keys each frequency needs, and what set_frequency fills in for a key the schedule lacks.
KEYS = {"hourly": ("min",), "daily": ("hour", "min"), "weekly": ("hour", "min", "days")}
DEFAULTS = {"min": "0", "hour": "0", "days": "monday"}


def check_retained(value: int) -> None:
    if not MIN_RETAINED <= value <= MAX_RETAINED:
        raise InvalidValue("retained_snapshots", value)


def check_schedule(frequency: str, schedule: dict[str, str]) -> dict[str, str]:
    """The schedule, normalised (day names lower case), if it fits ``frequency``; else
    INVALID_VALUE ["schedule:<key>", value], xapi's way of naming the key."""
    keys = KEYS.get(frequency)
    if keys is None:
        raise InvalidValue("frequency", frequency)
    out = {}
    for key, value in schedule.items():
        if key not in keys:
            raise InvalidValue(f"schedule:{key}", value)
        if key == "min" and value not in MINUTES:
            raise InvalidValue("schedule:min", value)
        if key == "hour" and not (value.isdigit() and 0 <= int(value) <= 23):
            raise InvalidValue("schedule:hour", value)
        if key == "days":
            days = [d.strip().lower() for d in value.split(",")]
            if not days or any(d not in DAYS for d in days) or len(set(days)) != len(days):
                raise InvalidValue("schedule:days", value)
            value = ",".join(days)
        out[key] = value
    for key in keys:
        if key not in out:
            raise InvalidValue(f"schedule:{key}", "")
    return out


def with_defaults(frequency: str, schedule: dict[str, str]) -> dict[str, str]:
    """``schedule`` cut and filled to fit ``frequency`` (set_frequency keeps what still applies)."""
    return {key: schedule.get(key, DEFAULTS[key]) for key in KEYS[frequency]}


def latest_due(frequency: str, schedule: dict[str, str], now: datetime) -> datetime:
    """The most recent instant at or before ``now`` when the schedule was due."""
    now = now.astimezone(UTC)
    minute = int(schedule.get("min", "0"))
    if frequency == "hourly":
        due = now.replace(minute=minute, second=0, microsecond=0)
        return due if due <= now else due - timedelta(hours=1)
    hour = int(schedule.get("hour", "0"))
    today = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if frequency == "daily":
        return today if today <= now else today - timedelta(days=1)
    days = {DAYS.index(d) for d in schedule.get("days", "monday").split(",")}
    for back in range(8):
        due = today - timedelta(days=back)
        if due.weekday() in days and due <= now:
            return due
    raise AssertionError("a weekly schedule has a day within eight days")

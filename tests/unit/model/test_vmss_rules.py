"""When a snapshot schedule is due, and which schedules are valid (xapi_vmss.ml's checks)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from farside.errors import InvalidValue
from farside.model.vmss_rules import check_retained, check_schedule, latest_due, with_defaults


def t(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("frequency", "schedule", "now", "due"),
    [
        ("hourly", {"min": "15"}, "2026-03-04 10:20", "2026-03-04 10:15"),
        ("hourly", {"min": "45"}, "2026-03-04 10:20", "2026-03-04 09:45"),
        ("hourly", {"min": "0"}, "2026-03-04 00:00", "2026-03-04 00:00"),
        ("daily", {"hour": "2", "min": "30"}, "2026-03-04 01:00", "2026-03-03 02:30"),
        ("daily", {"hour": "2", "min": "30"}, "2026-03-04 03:00", "2026-03-04 02:30"),
        # 2026-03-04 is a Wednesday.
        ("weekly", {"hour": "1", "min": "0", "days": "monday,friday"}, "2026-03-04 12:00", "2026-03-02 01:00"),
        ("weekly", {"hour": "1", "min": "0", "days": "wednesday"}, "2026-03-04 00:30", "2026-02-25 01:00"),
        ("weekly", {"hour": "1", "min": "0", "days": "wednesday"}, "2026-03-04 01:00", "2026-03-04 01:00"),
    ],
)
def test_latest_due(frequency: str, schedule: dict[str, str], now: str, due: str) -> None:
    """The most recent scheduled instant at or before now."""
    assert latest_due(frequency, schedule, t(now)) == t(due)


@pytest.mark.parametrize(
    ("frequency", "schedule", "error"),
    [
        ("hourly", {"min": "7"}, ["INVALID_VALUE", "schedule:min", "7"]),
        ("hourly", {}, ["INVALID_VALUE", "schedule:min", ""]),
        ("hourly", {"min": "0", "hour": "1"}, ["INVALID_VALUE", "schedule:hour", "1"]),
        ("daily", {"min": "0", "hour": "24"}, ["INVALID_VALUE", "schedule:hour", "24"]),
        ("weekly", {"min": "0", "hour": "1", "days": "funday"}, ["INVALID_VALUE", "schedule:days", "funday"]),
        (
            "weekly",
            {"min": "0", "hour": "1", "days": "monday,monday"},
            ["INVALID_VALUE", "schedule:days", "monday,monday"],
        ),
        ("yearly", {}, ["INVALID_VALUE", "frequency", "yearly"]),
    ],
)
def test_bad_schedules(frequency: str, schedule: dict[str, str], error: list[str]) -> None:
    """A schedule that does not fit its frequency names the key, as xapi does."""
    with pytest.raises(InvalidValue) as exc:
        check_schedule(frequency, schedule)
    assert exc.value.failure == error


def test_days_normalised_and_defaults() -> None:
    """Day names are taken in any case; set_frequency keeps what still applies and fills the rest."""
    assert check_schedule("weekly", {"min": "0", "hour": "3", "days": "Monday, FRIDAY"})["days"] == "monday,friday"
    assert with_defaults("weekly", {"min": "30"}) == {"min": "30", "hour": "0", "days": "monday"}
    assert with_defaults("hourly", {"min": "30", "hour": "4"}) == {"min": "30"}


def test_retained_bounds() -> None:
    """retained_snapshots is 1 to 10."""
    check_retained(1)
    check_retained(10)
    for bad in (0, 11):
        with pytest.raises(InvalidValue):
            check_retained(bad)

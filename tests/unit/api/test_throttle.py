"""The login throttle's rules, on a clock the test moves."""

from __future__ import annotations

import pytest

from farside.api.throttle import LoginThrottle
from farside.config import LoginLimits
from farside.errors import SessionAuthenticationFailed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def throttle(clock: Clock) -> LoginThrottle:
    return LoginThrottle(LoginLimits(failures=3, window_s=60.0), clock)


def refusal(throttle: LoginThrottle, user: str, address: str) -> list[str] | None:
    try:
        throttle.check(user, address)
    except SessionAuthenticationFailed as exc:
        return exc.failure
    return None


def fail(throttle: LoginThrottle, user: str, address: str) -> None:
    """One attempt let through that then failed."""
    throttle.check(user, address)
    throttle.settle(user, address, failed=True)


def test_an_address_is_throttled_after_its_failures_until_the_oldest_leaves_the_window(
    throttle: LoginThrottle, clock: Clock
) -> None:
    for user in ("a", "b", "c"):  # any user names: the address counts
        fail(throttle, user, "10.0.0.1")
        clock.now += 10
    refused = refusal(throttle, "d", "10.0.0.1")
    assert refused is not None and refused[0] == "SESSION_AUTHENTICATION_FAILED" and refused[1] == "d"
    assert "Too many failed logins from 10.0.0.1" in refused[2] and refused[3] == "30"
    assert refusal(throttle, "d", "10.0.0.2") is None, "another address is not throttled"
    clock.now += 30
    assert refusal(throttle, "d", "10.0.0.1") is None


def test_a_user_name_is_throttled_except_from_a_clean_address(throttle: LoginThrottle, clock: Clock) -> None:
    for i in range(3):
        fail(throttle, "root", f"10.0.1.{i}")
    assert refusal(throttle, "root", "10.0.2.1") is None, "a clean address is never locked out"
    refused = refusal(throttle, "root", "10.0.1.0")
    assert refused is not None and "for user 'root'" in refused[2] and refused[3] == "60"
    assert refusal(throttle, "other", "10.0.1.0") is None, "the address itself has one failure only"
    clock.now += 61
    assert refusal(throttle, "root", "10.0.1.0") is None


def test_a_throttle_is_logged_once_per_period(throttle: LoginThrottle, caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(3):
        fail(throttle, "x", "10.0.0.9")
    for _ in range(20):
        assert refusal(throttle, "x", "10.0.0.9") is not None
    assert [r.getMessage() for r in caplog.records].count("throttling logins from 10.0.0.9 for 60 s (3 failures)") == 1


def test_attempts_being_checked_count_against_the_budget(throttle: LoginThrottle) -> None:
    """A burst of concurrent guesses: only the budget's worth is let through to a password check."""
    for _ in range(3):
        assert refusal(throttle, "root", "10.0.0.5") is None  # let through, still being checked
    refused = refusal(throttle, "root", "10.0.0.5")
    assert refused is not None and refused[3] == "1"
    for _ in range(3):
        throttle.settle("root", "10.0.0.5", failed=False)
    assert refusal(throttle, "root", "10.0.0.5") is None, "successes leave the budget free again"

"""The HTTP limits and login throttle settings read from FARSIDE_* variables."""

from __future__ import annotations

import pytest

from farside.config import HttpLimits, LoginLimits, http_limits_from_env, login_limits_from_env


def test_defaults_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HEADER_TIMEOUT", "BODY_TIMEOUT", "MAX_CONNECTIONS", "MAX_CLIENT_CONNECTIONS"):
        monkeypatch.delenv(f"FARSIDE_{name}", raising=False)
    monkeypatch.delenv("FARSIDE_LOGIN_FAILURES", raising=False)
    monkeypatch.delenv("FARSIDE_LOGIN_WINDOW", raising=False)
    assert http_limits_from_env() == HttpLimits()
    assert login_limits_from_env() == LoginLimits()


def test_set_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARSIDE_HEADER_TIMEOUT", "2.5")
    monkeypatch.setenv("FARSIDE_MAX_CLIENT_CONNECTIONS", "3")
    monkeypatch.setenv("FARSIDE_LOGIN_WINDOW", "10")
    limits = http_limits_from_env()
    assert (limits.header_timeout_s, limits.max_client_connections) == (2.5, 3)
    assert login_limits_from_env().window_s == 10.0


@pytest.mark.parametrize(("value", "message"), [("soon", "must be a number"), ("0", "must be positive")])
def test_bad_values_say_which_variable(monkeypatch: pytest.MonkeyPatch, value: str, message: str) -> None:
    monkeypatch.setenv("FARSIDE_BODY_TIMEOUT", value)
    with pytest.raises(ValueError, match=f"FARSIDE_BODY_TIMEOUT {message}"):
        http_limits_from_env()

"""Sessions over real HTTP: login, logout, expiry, and the SDK's own re-login."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import XenAPI

from pools import PoolServer


class TestLogin:
    def test_login_returns_a_session_ref(self, shared_server: PoolServer) -> None:
        """A login gives an OpaqueRef whose record names the user and the host."""
        s = shared_server.session()
        record = s.xenapi.session.get_record(s.handle)
        assert s.handle.startswith("OpaqueRef:")
        assert record["auth_user_name"] == "root"
        assert record["originator"] == "farside-tests"
        assert record["this_host"] == s.xenapi.session.get_this_host(s.handle)
        assert s.xenapi.host.get_all() == [record["this_host"]]
        user = s.xenapi.session.get_this_user(s.handle)
        assert user == record["this_user"]

    def test_wrong_password_fails(self, shared_server: PoolServer) -> None:
        """A wrong password gives SESSION_AUTHENTICATION_FAILED, naming the user only."""
        with pytest.raises(XenAPI.Failure) as info:
            shared_server.session(password="wrong")
        assert info.value.details[:2] == ["SESSION_AUTHENTICATION_FAILED", "root"]

    def test_unknown_user_fails_the_same_way(self, shared_server: PoolServer) -> None:
        """An unknown user is indistinguishable from a wrong password."""
        with pytest.raises(XenAPI.Failure) as info:
            shared_server.session(user="nobody")
        assert info.value.details[0] == "SESSION_AUTHENTICATION_FAILED"

    def test_two_argument_login(self, shared_server: PoolServer) -> None:
        """Old clients send only user and password; version and originator default."""
        s = XenAPI.Session(shared_server.url)
        s.xenapi.login_with_password("root", "secret")
        assert s.xenapi.pool.get_all()

    def test_nothing_but_login_works_without_a_session(self, shared_server: PoolServer) -> None:
        """A call with a made-up session gets SESSION_INVALID with that handle."""
        s = XenAPI.Session(shared_server.url)
        result = s.pool.get_all("OpaqueRef:made-up")
        assert result["Status"] == "Failure"
        assert result["ErrorDescription"] == ["SESSION_INVALID", "OpaqueRef:made-up"]


class TestLogout:
    def test_logout_ends_the_session(self, shared_server: PoolServer) -> None:
        """After logout the ref is invalid and its record is gone."""
        s = shared_server.session()
        other = shared_server.session()
        handle = s.handle
        s.xenapi.session.logout()
        result = XenAPI.Session(shared_server.url).pool.get_all(handle)
        assert result["ErrorDescription"] == ["SESSION_INVALID", handle]
        with pytest.raises(XenAPI.Failure) as info:
            other.xenapi.session.get_record(handle)
        assert info.value.details == ["HANDLE_INVALID", "session", handle]

    def test_password_change(self, shared_server: PoolServer) -> None:
        """session.change_password checks the old password, then the new one logs in."""
        from farside.model.roles import Role

        shared_server.add_user("changer", Role.READ_ONLY, "old")
        s = shared_server.session("changer", "old")
        with pytest.raises(XenAPI.Failure):
            s.xenapi.session.change_password("wrong", "new")
        s.xenapi.session.change_password("old", "new")
        assert shared_server.session("changer", "new").xenapi.pool.get_all()


@pytest.fixture
def quick_expiry(pool_dir: Path) -> Iterator[PoolServer]:
    srv = PoolServer(pool_dir, extra_args=["--session-timeout", "1"]).start()
    try:
        yield srv
    finally:
        srv.stop()


class TestExpiry:
    def test_idle_session_expires(self, quick_expiry: PoolServer) -> None:
        """A session idle for longer than the timeout is invalid."""
        s = quick_expiry.session()
        handle = s.handle
        s.xenapi.pool.get_all()
        time.sleep(1.6)
        result = XenAPI.Session(quick_expiry.url).pool.get_all(handle)
        assert result["ErrorDescription"] == ["SESSION_INVALID", handle]

    def test_active_session_stays(self, quick_expiry: PoolServer) -> None:
        """Each call renews a session, so a busy client is never cut off."""
        s = quick_expiry.session()
        raw = XenAPI.Session(quick_expiry.url)
        for _ in range(6):
            time.sleep(0.4)
            assert raw.pool.get_all(s.handle)["Status"] == "Success"

    def test_sdk_logs_in_again_by_itself(self, quick_expiry: PoolServer) -> None:
        """The SDK answers SESSION_INVALID by logging in again and retrying: the call succeeds."""
        s = quick_expiry.session()
        first = s.handle
        time.sleep(1.6)
        assert s.xenapi.pool.get_all()
        assert s.handle != first

    def test_sessions_end_with_the_server(self, pool_dir: Path) -> None:
        """A restarted server knows no session of the last run, as xapi forgets them."""
        srv = PoolServer(pool_dir).start()
        try:
            handle = srv.session().handle
        finally:
            srv.stop()
        srv = PoolServer(pool_dir).start()
        try:
            result = XenAPI.Session(srv.url).pool.get_all(handle)
            assert result["ErrorDescription"] == ["SESSION_INVALID", handle]
            assert srv.session().xenapi.pool.get_all()
        finally:
            srv.stop()

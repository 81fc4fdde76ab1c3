"""``farside dr``'s pools: the flags and environment that name them, and each login problem as one
line naming what to check (against the fake servers of tests/login_servers.py)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
from rich.console import Console

from farside.cli.dr import connection
from farside.cli.dr.connection import Endpoint, Unreachable
from farside.cli.dr.failures import EXIT_USAGE, DrCliError
from login_servers import PASSWORD, REFUSED_PASSWORD, LoginServers


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FARSIDE_SERVER", "FARSIDE_USER", "FARSIDE_PASSWORD", "FARSIDE_PASSWORD_FILE",
                 "FARSIDE_SOURCE_PASSWORD", "FARSIDE_NO_VERIFY"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    connection.add_flags(parser, source=True)
    return parser.parse_args(argv)


def refusal(*argv: str) -> str:
    with pytest.raises(DrCliError) as error:
        connection.target(parse(*argv), interactive=False)
    assert error.value.exit_code == EXIT_USAGE
    return error.value.message


def test_server_forms_as_xe_takes_them(tmp_path: Path) -> None:
    """A bare IPv6 address is a server, as for xe; 'host:' and port 0 are refused, not guessed."""
    (tmp_path / "pw").write_text("pw\n")
    pw = ("--password-file", str(tmp_path / "pw"))
    assert connection.target(parse("--server", "::1", *pw), False).url == "http://[::1]:8440"
    assert connection.target(parse("--server", "https://dr:8440/ui/", *pw), False).url == "https://dr:8440"
    for wrong in ("dr:", "dr:0"):
        assert refusal("--server", wrong, *pw).startswith(f"{wrong} is not a server address: give HOST")


def test_no_credentials_in_the_url(tmp_path: Path) -> None:
    """A password in the URL is refused without being shown, and names the flags to use."""
    message = refusal("--server", "http://root:hunter2@dr:8440")
    assert "hunter2" not in message and "--user and --password-file" in message


def test_password_file_with_the_user_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """xe's two-line password file gives the user too; --user or FARSIDE_USER still wins."""
    both = tmp_path / "both"
    both.write_text("admin\nsecret\n")
    found = connection.target(parse("--server", "dr", "--password-file", str(both)), False)
    assert (found.user, found.password) == ("admin", "secret")
    found = connection.target(parse("--server", "dr", "--user", "ops", "--password-file", str(both)), False)
    assert (found.user, found.password) == ("ops", "secret")
    monkeypatch.setenv("FARSIDE_PASSWORD_FILE", str(both))
    monkeypatch.setenv("FARSIDE_USER", "env-user")
    assert connection.target(parse("--server", "dr"), False).user == "env-user"
    source = connection.source(parse("--source-server", "a", "--source-password-file", str(both)), False)
    assert source is not None and (source.user, source.password) == ("admin", "secret")


def test_password_files_that_give_none(tmp_path: Path) -> None:
    """A blank file, one of three lines, or a binary one: one line saying what to put there."""
    blank, three, binary = tmp_path / "blank", tmp_path / "three", tmp_path / "binary"
    blank.write_text("\n")
    three.write_text("a\nb\nc\n")
    binary.write_bytes(b"\xff\xfe")
    assert refusal("--server", "dr", "--password-file", str(blank)) == (
        f"the password file {blank} is empty: put the password on its first line"
    )
    assert "has more than two lines" in refusal("--server", "dr", "--password-file", str(three))
    assert refusal("--server", "dr", "--password-file", str(binary)) == (
        f"cannot read the password file {binary}: not a text file"
    )


def login_refusal(url: str, password: str = PASSWORD, timeout: float | None = None) -> DrCliError:
    with pytest.raises(DrCliError) as error:
        connection.connect(Endpoint(url, "root", password, True), timeout)
    assert error.value.exit_code == EXIT_USAGE
    return error.value


def test_login_problems(login_servers: LoginServers) -> None:
    """Each way a login fails is one line saying what to check."""
    pool = login_servers.pool()
    assert login_refusal(pool, "wrong").message == f"{pool} refused the user name or password of root: check them"
    assert login_refusal(pool, REFUSED_PASSWORD).message == f"{pool} refused the login: HOST_IS_SLAVE 10.0.0.1"
    tls = login_servers.pool(tls=True)
    assert login_refusal(tls).message.startswith(f"the certificate of {tls} does not verify (self-signed")
    not_xml = login_servers.not_xml()
    assert login_refusal(not_xml).message == (
        f"{not_xml} did not answer as a pool server (ExpatError): is it a farside server?"
    )


def test_a_server_that_hangs_up_is_there(login_servers: LoginServers) -> None:
    """A hang-up (a TLS server asked over plain HTTP) says to use https://, and is not taken for a
    lost pool: a source pool that hangs up stops the failover instead of being skipped."""
    url = login_servers.hang_up()
    refused = login_refusal(url)
    assert not isinstance(refused, Unreachable)
    assert (
        refused.message
        == f"{url} closed the connection without answering: if the server runs with --tls, use an https:// URL"
    )
    with pytest.raises(DrCliError, match="if that site is really down, run again without --source-server"):
        connection.connect_source(Endpoint(url, "root", PASSWORD, True), Console(file=io.StringIO()))


def test_xml_rpc_that_is_not_xenapi(login_servers: LoginServers) -> None:
    """A server answering XML-RPC in another shape is not a pool server (it was a traceback)."""
    url = login_servers.not_xenapi()
    assert login_refusal(url).message == (
        f"{url} did not answer as a pool server (ResponseError): is it a farside server?"
    )


def test_a_source_that_does_not_answer_is_skipped(login_servers: LoginServers, monkeypatch: pytest.MonkeyPatch) -> None:
    """A source pool that never answers is reported and skipped."""
    monkeypatch.setattr(connection, "SOURCE_TIMEOUT_S", 0.2)
    url = login_servers.silent()
    assert isinstance(login_refusal(url, timeout=0.2), Unreachable)
    err = io.StringIO()
    assert connection.connect_source(Endpoint(url, "root", PASSWORD, True), Console(file=err, width=300)) is None
    assert f"farside: {url} did not answer" in err.getvalue() and "going on without asking it" in err.getvalue()

"""``farside xe``'s connection: the server and password forms it shares with ``farside dr``, and each
login problem in xe's words, exit code 1 and no traceback (against tests/login_servers.py)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from farside.cli.xe import main
from farside.cli.xe.connection import read_config, read_password_file, server_url
from farside.cli.xe.failures import USAGE_HINT, XeError
from login_servers import PASSWORD, REFUSED_PASSWORD, LoginServers


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("FARSIDE_SERVER", "FARSIDE_USER", "FARSIDE_PASSWORD", "FARSIDE_PASSWORD_FILE",
                 "FARSIDE_NO_VERIFY", "FARSIDE_XE_CONFIG"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.farside/xe.conf


def xe_lines(*argv: str) -> list[str]:
    """What ``farside xe`` prints on stderr for a command that must fail."""
    out, err = io.StringIO(), io.StringIO()
    assert main(list(argv), out, err) == 1
    assert "Traceback" not in err.getvalue() and out.getvalue() == ""
    return err.getvalue().splitlines()


def test_server_forms_as_dr_takes_them() -> None:
    """A URL's path is dropped (as dr does), never glued before the port; port 0 is refused."""
    assert server_url("pool-a/RPC2", None, False) == "http://pool-a:8440"
    assert server_url("http://pool-a:9000/ui/", None, False) == "http://pool-a:9000"
    for wrong in ("pool-a:0", "http://pool-a:0", "pool-a:"):
        with pytest.raises(XeError, match=f"Server '{wrong}' must be HOST, HOST:PORT"):
            server_url(wrong, None, False)


def test_no_credentials_in_the_url() -> None:
    """A password in the URL is refused without being shown, and names the switches to use."""
    lines = xe_lines("-s", "http://root:hunter2@pool-a", "vm-list")
    assert lines == ["A server URL must not hold a user name or password: use -u with -pw or -pwf", USAGE_HINT]


def test_files_that_are_not_text(tmp_path: Path) -> None:
    """A binary password or settings file is refused in a line, not a traceback."""
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    with pytest.raises(XeError, match=f"Error opening password file '{binary}': not a text file"):
        read_password_file(str(binary))
    with pytest.raises(XeError, match=f"Error opening config file '{binary}': not a text file"):
        read_config(binary)


def test_login_problems(login_servers: LoginServers) -> None:
    """A wrong password, another XenAPI failure (as xe prints one), a certificate, a server that is no pool."""
    pool = login_servers.pool()
    assert xe_lines("-s", pool, "-pw", "wrong", "vm-list")[0] == f"Authentication failed for user 'root' at {pool}"
    assert xe_lines("-s", pool, "-pw", REFUSED_PASSWORD, "vm-list") == [
        "Error code: HOST_IS_SLAVE",
        "Error parameters: 10.0.0.1",
    ]
    tls = login_servers.pool(tls=True)
    refused = xe_lines("-s", tls, "-pw", PASSWORD, "vm-list")
    assert refused[0].startswith(f"The certificate of {tls} could not be verified (self-signed")
    not_xml = login_servers.not_xml()
    assert xe_lines("-s", not_xml, "-pw", PASSWORD, "vm-list") == [
        f"{not_xml} did not answer as a pool server (ExpatError)."
    ]
    http_error = login_servers.http_error()
    assert xe_lines("-s", http_error, "-pw", PASSWORD, "vm-list") == [
        f"{http_error} did not answer as a pool server (HTTP 501 Unsupported method ('POST'))."
    ]


def test_a_server_that_hangs_up(login_servers: LoginServers) -> None:
    """A hang-up over plain HTTP (what a TLS server does) suggests https:// or --tls."""
    url = login_servers.hang_up()
    assert xe_lines("-s", url, "-pw", PASSWORD, "vm-list") == [
        f"Unable to contact server at {url} (Remote end closed connection without response). Please check "
        "server and port settings. Does it run with --tls? Then use an https:// URL or --tls."
    ]

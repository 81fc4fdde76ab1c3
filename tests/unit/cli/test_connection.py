"""The client side of a pool server shared by ``farside xe`` and ``farside dr``: server addresses,
password files, and each way a login fails, against small servers on loopback ports."""

from __future__ import annotations

from pathlib import Path

import pytest

from farside.cli.connection import (
    AddressError,
    AddressProblem,
    LoginError,
    LoginProblem,
    PasswordFile,
    PasswordFileError,
    PasswordFileProblem,
    log_in,
    read_password_file,
    server_url,
)
from login_servers import PASSWORD, REFUSED_PASSWORD, LoginServers

from pools import free_port


@pytest.mark.parametrize(
    ("server", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8440"),
        ("pool-a:9000", "http://pool-a:9000"),
        ("HTTPS://Pool-A", "https://pool-a:8440"),
        ("https://pool-a:8443/", "https://pool-a:8443"),
        ("[::1]:9000", "http://[::1]:9000"),
        ("[::1]", "http://[::1]:8440"),
        ("::1", "http://[::1]:8440"),
        ("fe80::1%eth0", "http://[fe80::1%eth0]:8440"),
        (" pool-a:9000\n", "http://pool-a:9000"),
        ("https://dr:8440/ui/?page=1#top", "https://dr:8440"),
        ("pool-a/RPC2", "http://pool-a:8440"),
    ],
)
def test_server_forms(server: str, url: str) -> None:
    """A host, host:port, IPv6 bare or in brackets, or an http(s) URL, whose path is dropped."""
    assert server_url(server) == url


def test_port_and_tls_arguments() -> None:
    """A port argument wins over the server's; tls picks HTTPS only where no scheme is given."""
    assert server_url("pool-a:9000", port=9001) == "http://pool-a:9001"
    assert server_url("pool-a", tls=True) == "https://pool-a:8440"
    assert server_url("http://pool-a", tls=True) == "http://pool-a:8440"


@pytest.mark.parametrize(
    ("server", "problem"),
    [
        ("ftp://pool-a", AddressProblem.NOT_HTTP),
        ("pool-a:", AddressProblem.NOT_AN_ADDRESS),
        ("pool-a:abc", AddressProblem.NOT_AN_ADDRESS),
        ("pool-a:0", AddressProblem.NOT_AN_ADDRESS),
        ("http://pool-a:0", AddressProblem.NOT_AN_ADDRESS),
        ("pool-a:70000", AddressProblem.NOT_AN_ADDRESS),
        ("garbage::::", AddressProblem.NOT_AN_ADDRESS),
        ("[::1", AddressProblem.NOT_AN_ADDRESS),
        ("http://[zz::]:1", AddressProblem.NOT_AN_ADDRESS),
        ("http://", AddressProblem.NOT_AN_ADDRESS),
        ("", AddressProblem.NOT_AN_ADDRESS),
        ("pool a", AddressProblem.NOT_AN_ADDRESS),
        ("http://root:pw@pool-a:8440", AddressProblem.CREDENTIALS),
        ("ftp://root:pw@pool-a", AddressProblem.CREDENTIALS),
        ("root@pool-a", AddressProblem.CREDENTIALS),
    ],
)
def test_what_is_no_server(server: str, problem: AddressProblem) -> None:
    """Another scheme, a port outside 1-65535, no host, or credentials in the URL are refused."""
    with pytest.raises(AddressError) as error:
        server_url(server)
    assert error.value.problem is problem and error.value.server == server


def test_password_file_forms(tmp_path: Path) -> None:
    """The password alone, or xe's user then password; blank lines and the newline do not count."""
    alone, both, spaced = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    alone.write_text("pw\n")
    both.write_text("admin\npw\n")
    spaced.write_text("\n  pass word \n\n")
    assert read_password_file(str(alone)) == PasswordFile(None, "pw")
    assert read_password_file(str(both)) == PasswordFile("admin", "pw")
    assert read_password_file(str(spaced)) == PasswordFile(None, "  pass word ")


def test_password_files_that_give_none(tmp_path: Path) -> None:
    """A missing, unreadable, binary, empty or three-line file says which problem it has."""
    empty, three, binary = tmp_path / "empty", tmp_path / "three", tmp_path / "binary"
    empty.write_text("\n \n")
    three.write_text("a\nb\nc\n")
    binary.write_bytes(b"\xff\xfe\x00")
    cases = [
        (tmp_path / "missing", PasswordFileProblem.UNREADABLE, "No such file or directory"),
        (tmp_path, PasswordFileProblem.UNREADABLE, "Is a directory"),
        (binary, PasswordFileProblem.UNREADABLE, "not a text file"),
        (empty, PasswordFileProblem.EMPTY, ""),
        (three, PasswordFileProblem.TOO_MANY_LINES, ""),
    ]
    for path, problem, reason in cases:
        with pytest.raises(PasswordFileError) as error:
            read_password_file(str(path))
        assert (error.value.problem, error.value.path, error.value.reason) == (problem, str(path), reason)


def test_log_in(login_servers: LoginServers) -> None:
    """The right password gives a session; a self-signed certificate is accepted without verify."""
    assert log_in(login_servers.pool(), "root", PASSWORD).handle == "OpaqueRef:session"
    assert log_in(login_servers.pool(tls=True), "root", PASSWORD, verify=False).handle == "OpaqueRef:session"


def _problem(url: str, password: str = PASSWORD, timeout: float | None = None) -> LoginError:
    with pytest.raises(LoginError) as error:
        log_in(url, "root", password, timeout=timeout)
    assert error.value.url == url
    return error.value


def test_refused_logins(login_servers: LoginServers) -> None:
    """A wrong password and any other XenAPI failure at login are told apart; the failure is kept."""
    pool = login_servers.pool()
    assert _problem(pool, "wrong").problem is LoginProblem.WRONG_PASSWORD
    refused = _problem(pool, REFUSED_PASSWORD)
    assert refused.problem is LoginProblem.REFUSED and refused.reason == "HOST_IS_SLAVE 10.0.0.1"
    assert refused.failure is not None and refused.failure.failure == ["HOST_IS_SLAVE", "10.0.0.1"]


def test_tls_problems(login_servers: LoginServers) -> None:
    """A certificate that does not verify, and HTTPS to a server that speaks plain HTTP."""
    tls = _problem(login_servers.pool(tls=True))
    assert tls.problem is LoginProblem.CERTIFICATE and "self-signed" in tls.reason
    plain = _problem(login_servers.pool().replace("http://", "https://"))
    assert plain.problem is LoginProblem.TLS and plain.reason == "WRONG_VERSION_NUMBER"


def test_servers_that_are_no_pool(login_servers: LoginServers) -> None:
    """An HTTP error, an answer that is not XML-RPC, and a hang-up are each their own problem."""
    http_error = _problem(login_servers.http_error())
    assert (http_error.problem, http_error.reason) == (LoginProblem.HTTP_STATUS, "HTTP 501 Unsupported method ('POST')")
    assert _problem(login_servers.not_xml()).problem is LoginProblem.NOT_A_POOL
    hung_up = _problem(login_servers.hang_up())
    assert hung_up.problem is LoginProblem.HUNG_UP and hung_up.plain_http


def test_nothing_answers(login_servers: LoginServers) -> None:
    """No server on the port, or one that never answers within the timeout given."""
    refused = _problem(f"http://127.0.0.1:{free_port()}")
    assert (refused.problem, refused.reason) == (LoginProblem.UNREACHABLE, "Connection refused")
    silent = _problem(login_servers.silent(), timeout=0.2)
    assert silent.problem is LoginProblem.TIMEOUT

"""xe's command line: switches, key=value parameters, connection settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from farside.cli.xe.argv import UsageError, parse
from farside.cli.xe.command import Command, Params
from farside.cli.xe.connection import read_config, read_password_file, resolve, server_url
from farside.cli.xe.failures import XeError
from farside.config import ClientEnv


def test_switches_parameters_and_connection() -> None:
    """Connection switches anywhere, --switches as name=true, key=value kept whole after the first '='."""
    inv = parse(["-s", "h", "vm-list", "-pw", "x", "name-label=a=b", "--minimal", "username=root", "--no-verify"])
    assert inv.command == "vm-list"
    assert inv.params == [("name-label", "a=b"), ("minimal", "true")]
    assert inv.connection == {"server": "h", "password": "x", "username": "root"}
    assert inv.flags == {"no-verify"} and inv.minimal


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-s"], "Switch -s requires a parameter"),
        (["vm-list", "-x"], "Unknown switch: -x"),
        (["vm-list", "stray"], "Syntax error: 'stray' is neither a parameter (key=value) nor a switch"),
    ],
)
def test_bad_command_lines(argv: list[str], message: str) -> None:
    """A malformed command line is refused with xe's words."""
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(argv)


def test_help_topic() -> None:
    """'help COMMAND' keeps the command to explain."""
    assert parse(["help", "vm-start"]).params == [("vm-start", "")]


@pytest.mark.parametrize(
    ("server", "port", "tls", "url"),
    [
        ("127.0.0.1", None, False, "http://127.0.0.1:8440"),
        ("pool-a:9000", None, False, "http://pool-a:9000"),
        ("pool-a:9000", "9001", False, "http://pool-a:9001"),
        ("pool-a", None, True, "https://pool-a:8440"),
        ("https://pool-a:8443/", None, False, "https://pool-a:8443"),
        ("[::1]:8440", None, False, "http://[::1]:8440"),
        ("::1", None, False, "http://[::1]:8440"),
    ],
)
def test_server_url(server: str, port: str | None, tls: bool, url: str) -> None:
    """-s takes a URL or HOST[:PORT]; -p overrides the port; --tls picks HTTPS for a bare host."""
    assert server_url(server, port, tls) == url


def test_bad_port_and_server() -> None:
    """A port outside 1-65535 or a URL of another scheme is refused."""
    with pytest.raises(XeError, match="Port number must be an integer"):
        server_url("h", "70000", False)
    with pytest.raises(XeError, match="http:// or https://"):
        server_url("ftp://h", None, False)
    for garbage in ("garbage::::", "[::1", "http://[zz::]:1", "http://h:99999"):
        with pytest.raises(XeError, match=r"must be .*HOST") as error:
            server_url(garbage, None, False)
        assert "IPv4 or IPv6" not in str(error.value)


def test_precedence_flags_env_file(tmp_path: Path) -> None:
    """The command line beats FARSIDE_* variables, which beat the settings file."""
    conf = tmp_path / "xe.conf"
    conf.write_text("server=file-host\nport=1000\nusername=file-user\npassword=file-pw\n")
    from_file = resolve(parse(["--config", str(conf), "vm-list"]), ClientEnv())
    assert (from_file.url, from_file.user, from_file.password) == ("http://file-host:1000", "file-user", "file-pw")
    env = ClientEnv(server="https://env-host:2000", password="env-pw", no_verify=True)
    from_env = resolve(parse(["--config", str(conf), "vm-list"]), env)
    assert (from_env.url, from_env.user, from_env.password, from_env.verify) == (
        "https://env-host:2000", "file-user", "env-pw", False
    )  # fmt: skip
    flags = resolve(parse(["--config", str(conf), "-s", "cli-host", "-u", "u", "-pw", "p", "vm-list"]), env)
    assert (flags.url, flags.user, flags.password, flags.verify) == ("http://cli-host:8440", "u", "p", False)


def test_password_files(tmp_path: Path) -> None:
    """A password file holds the password alone, or xe's username and password lines."""
    alone, both, empty = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    alone.write_text("pw\n")
    both.write_text("admin\npw\n")
    empty.write_text("")
    assert read_password_file(str(alone)) == (None, "pw")
    assert read_password_file(str(both)) == ("admin", "pw")
    with pytest.raises(XeError, match="format"):
        read_password_file(str(empty))
    with pytest.raises(XeError, match=r"Error opening password file .*: No such file or directory"):
        read_password_file(str(tmp_path / "missing"))
    with pytest.raises(XeError, match=f"Error opening password file '{tmp_path}': Is a directory"):
        read_password_file(str(tmp_path))
    settings = resolve(parse(["-pwf", str(both), "vm-list"]), ClientEnv())
    assert (settings.user, settings.password) == ("admin", "pw")


def test_config_file_errors(tmp_path: Path) -> None:
    """An unknown key or a line without '=' names the file and line; comments and blanks are fine."""
    conf = tmp_path / "xe.conf"
    conf.write_text("# comment\n\nserver=a\nnonsense\n")
    with pytest.raises(XeError, match=f"Error parsing config file '{conf}' line 4"):
        read_config(conf)
    with pytest.raises(XeError, match="Error opening config file"):
        read_config(tmp_path / "missing")


def test_no_password_anywhere() -> None:
    """Without a password from any source, the command stops before connecting and says where to put one."""
    with pytest.raises(XeError, match="Username/password must be specified"):
        resolve(parse(["--config", "/dev/null", "vm-list"]), ClientEnv())


def test_parameter_checks() -> None:
    """Missing required, unknown and repeated parameters are refused; name: prefixes take any key."""
    command = Command("drtask-create", lambda ctx: None, reqd=("type",), optn=("device-config:", "sr-whitelist"))
    command.check(Params([("type", "file"), ("device-config:path", "/l"), ("minimal", "true")]))
    with pytest.raises(XeError, match="Required parameter not found: type"):
        command.check(Params([]))
    with pytest.raises(XeError, match="Unknown parameter 'device-config:'"):
        command.check(Params([("type", "file"), ("device-config:", "x")]))
    with pytest.raises(XeError, match="Parameter type is defined multiple times"):
        Params([("type", "a"), ("type", "b")])
    assert Params([("device-config:path", "/l"), ("device-configx", "y")]).prefixed("device-config") == {"path": "/l"}

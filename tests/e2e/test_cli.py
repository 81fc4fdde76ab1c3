"""The farside command as an operator runs it: init, user management, server start errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import XenAPI

from pools import PoolServer


def farside(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "farside.cli.main", *args], capture_output=True, text=True, timeout=60)


def test_init_then_serve(tmp_path: Path) -> None:
    """init makes a pool whose server root can log into with the given password."""
    data = tmp_path / "site"
    result = farside("init", str(data), "--pool-name", "Site A", "--admin-password", "pw")
    assert result.returncode == 0, result.stderr
    assert "created pool 'Site A'" in result.stdout
    assert (data / "tls" / "cert.pem").exists() and (data / "tls" / "key.pem").stat().st_mode & 0o077 == 0
    server = PoolServer(data).start()
    try:
        s = server.session("root", "pw")
        assert [p["name_label"] for p in s.xenapi.pool.get_all_records().values()] == ["Site A"]
        host = s.xenapi.host.get_record(s.xenapi.host.get_all()[0])
        assert host["software_version"]["product_version"]
        assert len(host["host_CPUs"]) >= 1 and int(host["cpu_info"]["cpu_count"]) == len(host["host_CPUs"])
        assert len(s.xenapi.role.get_all()) == 6
        assert s.xenapi.network.get_all()
    finally:
        server.stop()


def test_init_refuses_a_used_directory(tmp_path: Path) -> None:
    """init never overwrites: a non-empty directory is refused with a message, exit code 2."""
    (tmp_path / "file").write_text("keep me")
    result = farside("init", str(tmp_path), "--pool-name", "x", "--admin-password", "pw")
    assert result.returncode == 2
    assert "not empty" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "file").read_text() == "keep me"


def test_server_without_a_pool(tmp_path: Path) -> None:
    """server on a directory with no pool says to run init, without a traceback."""
    result = farside("server", str(tmp_path), "--listen", "127.0.0.1:1")
    assert result.returncode != 0
    assert "farside init" in result.stderr and "Traceback" not in result.stderr


def test_bad_listen_address(pool_dir: Path) -> None:
    """A malformed --listen is explained."""
    result = farside("server", str(pool_dir), "--listen", "nowhere")
    assert result.returncode == 2 and "HOST:PORT" in result.stderr


def test_user_commands(server: PoolServer) -> None:
    """user add/list/passwd/remove change who may log in, even while the server runs."""
    data = str(server.data_dir)
    assert farside("user", "add", data, "ops", "--role", "pool-operator", "--password", "a").returncode == 0
    listing = farside("user", "list", data).stdout
    assert "ops" in listing and "pool-operator" in listing and "root" in listing
    assert server.session("ops", "a").xenapi.pool.get_all()
    assert farside("user", "passwd", data, "ops", "--password", "b").returncode == 0
    server.session("ops", "b")
    again = farside("user", "add", data, "ops", "--role", "read-only", "--password", "c")
    assert again.returncode != 0 and "USER_ALREADY_EXISTS" in again.stderr
    bad_role = farside("user", "add", data, "x", "--role", "god", "--password", "c")
    assert bad_role.returncode == 2 and "pool-admin" in bad_role.stderr
    assert farside("user", "remove", data, "ops").returncode == 0
    try:
        server.session("ops", "b")
        raise AssertionError("a removed user logged in")
    except XenAPI.Failure as failure:
        assert failure.details[0] == "SESSION_AUTHENTICATION_FAILED"
    assert farside("user", "remove", data, "root").returncode == 2


def test_a_served_pool_is_not_served_twice(server: PoolServer) -> None:
    """A second server on the same data says who serves it, and leaves the first one's sessions alone."""
    s = server.session()
    assert server.process is not None
    second = farside("server", str(server.data_dir), "--listen", "127.0.0.1:0")
    assert second.returncode != 0 and "serving" not in second.stdout
    assert second.stderr.strip() == (
        f"farside: {server.data_dir} is already served (pid {server.process.pid}): stop that server first"
    )
    assert s.xenapi.pool.get_all()  # the session the first server gave is still good


def test_a_file_that_is_no_certificate(pool_dir: Path) -> None:
    result = farside("server", str(pool_dir), "--listen", "127.0.0.1:0", "--tls-cert", "/etc/passwd",
                     "--tls-key", "/etc/passwd")  # fmt: skip
    assert result.returncode != 0 and "serving" not in result.stdout
    assert result.stderr.strip() == "farside: cannot use /etc/passwd as a TLS certificate: it holds no PEM certificate"


def test_init_says_what_is_wrong_with_its_arguments(tmp_path: Path) -> None:
    for args, text in [
        (("init", "/etc/passwd/site"), "cannot make /etc/passwd/site: a file is in its path"),
        (("init", str(tmp_path / "site"), "--pool-name", " "), "--pool-name must not be empty"),
    ]:
        base = ["--pool-name", "x"] if "--pool-name" not in args else []
        result = farside(*args, *base, "--admin-password", "pw")
        assert result.returncode == 2 and text in result.stderr and len(result.stderr.splitlines()) == 1, result
    assert not (tmp_path / "site").exists()
    empty, two_lines = tmp_path / "empty-password", tmp_path / "user-and-password"
    empty.write_text("\n")
    two_lines.write_text("root\nsecret\n")
    for args, text in [
        (("--admin-password-file", str(tmp_path / "missing")), "cannot read --admin-password-file"),
        (("--admin-password-file", str(empty)), "the admin password must not be empty"),
        (("--admin-password-file", str(two_lines)), "holds 2 lines: put root's password alone"),
        (("--admin-password", "a", "--admin-password-file", str(empty)), "not allowed with argument"),
    ]:
        result = farside("init", str(tmp_path / "site"), "--pool-name", "x", *args)
        assert result.returncode == 2 and text in result.stderr and len(result.stderr.splitlines()) == 1, result
    assert not (tmp_path / "site").exists()


def test_init_takes_the_password_from_a_file(tmp_path: Path) -> None:
    """A password that starts with "-" (as a random one may) stays out of argv, and of ps."""
    (tmp_path / "password").write_text("-Xy_9-random\n")
    result = farside("init", str(tmp_path / "site"), "--pool-name", "Site A", "--admin-password-file",
                     str(tmp_path / "password"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    server = PoolServer(tmp_path / "site").start()
    try:
        server.session("root", "-Xy_9-random").xenapi.session.logout()
    finally:
        server.stop()

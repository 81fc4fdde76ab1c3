"""``farside dr`` without a pool to talk to: every wrong flag or unreachable server is one line on
stderr and exit code 2, never a traceback."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from farside.cli.main import main

from pools import free_port


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FARSIDE_SERVER", "FARSIDE_USER", "FARSIDE_PASSWORD", "FARSIDE_PASSWORD_FILE",
                 "FARSIDE_SOURCE_PASSWORD", "FARSIDE_NO_VERIFY"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["dr", *argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return code, lines[0]


class Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # stderr is what the tests read


@pytest.fixture
def not_a_pool() -> Iterator[str]:
    """An HTTP server that answers every request with an error (501: no POST here)."""
    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_what_a_script_must_say(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(capsys, "failover", "--all") == (2, "farside: say where the LUNs are: pass --lun PATH (repeatable) "
                                                   "or --lun-dir DIR")  # fmt: skip
    code, line = run(capsys, "test", "--lun", "/l")
    assert code == 2 and "pass --all, or --vapp NAME" in line
    code, line = run(capsys, "failback", "--lun", "/l", "--all")
    assert code == 2 and "pass --server URL" in line
    code, line = run(capsys, "failover", "--lun", "/l", "--all", "--server", "127.0.0.1:1")
    assert code == 2 and "no password for root at http://127.0.0.1:1" in line and "FARSIDE_PASSWORD" in line
    code, line = run(capsys, "runs", "--server", "127.0.0.1", "--password-file", "/no/such/file")
    assert code == 2 and "cannot read the password file /no/such/file" in line


def test_unreachable_and_wrong_servers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, not_a_pool: str, tmp_path: Path
) -> None:
    (tmp_path / "pw").write_text("secret\n")
    port = free_port()
    code, line = run(capsys, "runs", "--server", f"127.0.0.1:{port}", "--password-file", str(tmp_path / "pw"))
    assert code == 2 and f"cannot reach http://127.0.0.1:{port} (Connection refused)" in line
    monkeypatch.setenv("FARSIDE_PASSWORD", "secret")
    monkeypatch.setenv("FARSIDE_SERVER", not_a_pool)
    code, line = run(capsys, "report", "abc")
    assert code == 2 and "did not answer as a pool server (HTTP 501" in line
    code, line = run(capsys, "runs", "--server", "ftp://x")
    assert code == 2 and "not an http:// or https:// URL" in line
    monkeypatch.setenv("FARSIDE_SERVER", "garbage::::")
    code, line = run(capsys, "runs")
    assert code == 2 and "give HOST, HOST:PORT, [IPV6]:PORT or a URL" in line
    code, line = run(capsys, "runs", "--server", "http://[zz::]:80")
    assert code == 2 and "is not a server address" in line


def test_argparse_refuses_unknown_words(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["dr", "failover", "--power", "fast"])
    assert info.value.code == 2 and "invalid choice: 'fast'" in capsys.readouterr().err


def test_failure_hints_name_the_flags_not_the_options() -> None:
    from farside.cli.dr.driver import _flags

    assert _flags("mirrors still replicate (split them: split_mirrors=true)") == (
        "mirrors still replicate (split them: --split-mirrors)"
    )
    assert _flags("stopped? (confirm_split=true)") == "stopped? (--confirm-split)"

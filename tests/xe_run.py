"""Running ``farside xe`` as an operator does, for the end-to-end tests of its commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pools import ADMIN_PASSWORD, PoolServer


def xe(
    server: PoolServer | None, *args: str, env: dict[str, str] | None = None, home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``farside xe -s URL -pw secret ARGS`` (no -s/-pw when ``server`` is None), with no FARSIDE_* or
    ~/.farside settings but those given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FARSIDE_")}
    clean["HOME"] = str(home or Path("/nonexistent-home"))
    clean.update(env or {})
    connection = ["-s", server.url, "-pw", ADMIN_PASSWORD] if server else []
    argv = [sys.executable, "-m", "farside.cli.main", "xe", *connection, *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=clean)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def ok(server: PoolServer | None, *args: str, **kw: object) -> str:
    result = xe(server, *args, **kw)  # type: ignore[arg-type]
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


def failed(server: PoolServer | None, *args: str, **kw: object) -> list[str]:
    """The stderr lines of a command that must fail, as xe fails: exit code 1, nothing on stdout."""
    result = xe(server, *args, **kw)  # type: ignore[arg-type]
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    return result.stderr.splitlines()


def block(*fields: tuple[str, str]) -> str:
    """One record as xe prints it: the first name padded right, the others left, colons aligned."""
    width = 4 + max(len(name) for name, _ in fields)
    lines = [f"{fields[0][0].ljust(width)}: {fields[0][1]}"] + [f"{n.rjust(width)}: {v}" for n, v in fields[1:]]
    return "\n".join(lines) + "\n\n\n"

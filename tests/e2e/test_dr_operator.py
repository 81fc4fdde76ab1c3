"""Operator mistakes and interruptions on a real two-site lab, as a QA pass made them: a failback
while the DR site still runs the VMs, a test failover pointed at the mirrored LUN itself, Ctrl-C
while a call is in flight or while the command starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
FARSIDE = [sys.executable, "-m", "farside.cli.main"]


def farside(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*FARSIDE, *args], capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, f"farside {' '.join(args)}: {done.stderr}{done.stdout}"
    return done


def _sigint_as_a_terminal() -> None:
    # Children of a non-interactive shell start with SIGINT ignored; an operator's terminal does not.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Lab:
    def __init__(self, root: Path) -> None:
        self.root = root

    def url(self, site: str) -> str:
        return f"http://127.0.0.1:{json.loads((self.root / 'lab.json').read_text())['ports'][site]}"

    def conn(self, site: str) -> list[str]:
        return ["--server", self.url(site), "--password-file", str(self.root / "password")]

    def xe(self, site: str, *args: str) -> str:
        return farside("xe", "-s", self.url(site), "-pwf", str(self.root / "password"), *args).stdout

    def running(self, site: str) -> set[str]:
        """The site's running guests (its control domain aside)."""
        listed = self.xe(site, "vm-list", "power-state=running", "is-control-domain=false", "params=uuid", "--minimal")
        return {u for u in listed.split(",") if u.strip()}

    def server_pid(self, site: str) -> int:
        return int((self.root / f"site-{site}" / "server.pid").read_text().split()[0])


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    root = tmp_path / "lab"
    farside("lab", "up", str(root), "--vms", "2", "--vapps", "1")
    try:
        yield Lab(root)
    finally:
        farside("lab", "down", str(root), "--purge", check=False)


def test_a_failback_needs_the_pool_it_fails_back_from(lab: Lab) -> None:
    """Without --source-server a failback is refused before anything is done; with it, VMs still
    running at the DR site stop the run before any mirror is split: never two copies running."""
    mirror = ["--state-dir", str(lab.root / "mirror")]
    farside("lab", "disaster", str(lab.root))
    farside(
        "dr", "failover", *lab.conn("b"), "--lun-dir", str(lab.root / "luns-b"), "--split-mirrors", "--all", "--yes",
        "--declare-site-down", "Site A",
    )  # fmt: skip
    at_b = lab.running("b")
    assert at_b
    luns = sorted(p.name for p in (lab.root / "luns-b").iterdir())
    for lun in luns:
        farside("mirror", "reverse", lun, *mirror)
    farside("lab", "start", str(lab.root), "a")  # the primary is back; it plugs its SRs (split targets)
    for pbd in lab.xe("a", "pbd-list", "params=uuid", "--minimal").strip().split(","):
        lab.xe("a", "pbd-unplug", f"uuid={pbd}")
    for lun in luns:
        farside("mirror", "resync", lun, *mirror)
    failback = ["dr", "failback", *lab.conn("a"), "--lun-dir", str(lab.root / "luns-a"), "--split-mirrors", "--all",
                "--yes"]  # fmt: skip
    # The runbook's "shut the VMs down at the DR site" skipped:
    refused = farside(*failback, check=False)
    assert refused.returncode == 2 and "a failback needs the pool it fails back from" in refused.stderr
    stopped = farside(*failback, "--source-server", lab.url("b"), "--source-password-file", str(lab.root / "password"),
                      check=False)  # fmt: skip
    assert stopped.returncode != 0 and "still run in the source pool" in stopped.stderr, stopped.stderr
    assert "nothing was split" in stopped.stderr
    assert not lab.running("a") and lab.running("b") == at_b
    states = {m["state"] for m in json.loads(farside("mirror", "status", "--json", *mirror).stdout)}
    assert states == {"replicating"}


def test_a_test_failover_on_the_mirrored_lun_says_to_take_a_snapshot(lab: Lab) -> None:
    done = farside("dr", "test", *lab.conn("b"), "--lun", str(lab.root / "luns-b" / "lun1"), "--all", "--yes",
                   check=False)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "farside mirror snapshot" in done.stderr and "farside dr resume" not in done.stderr, done.stderr
    assert "nothing was done" in done.stderr
    assert json.loads(farside("dr", "runs", *lab.conn("b"), "--json").stdout) == []


def test_ctrl_c_while_a_call_is_in_flight(lab: Lab) -> None:
    """The engine waits on the pool's answer (its server stopped for a moment, as a busy one would
    be) when the operator presses Ctrl-C: exit 130 with the resume command, and the resume finishes."""
    farside("lab", "disaster", str(lab.root))
    cli = subprocess.Popen(
        [*FARSIDE, "dr", "failover", *lab.conn("b"), "--lun-dir", str(lab.root / "luns-b"), "--split-mirrors",
         "--all", "--yes", "--declare-site-down", "Site A"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_as_a_terminal,
    )  # fmt: skip
    assert cli.stderr is not None
    seen = ""
    server = lab.server_pid("b")
    while True:  # recover calls the pool from the engine's own thread
        line = cli.stderr.readline()
        seen += line
        assert line, f"the failover ended before its recover step:\n{seen}"
        if line.startswith("recover: 1/"):
            os.kill(server, signal.SIGSTOP)
            break
    try:
        time.sleep(1.0)  # the CLI is blocked on a request to the stopped server
        cli.send_signal(signal.SIGINT)
        time.sleep(0.5)
    finally:
        os.kill(server, signal.SIGCONT)
    _, rest = cli.communicate(timeout=120)
    seen += rest
    run = seen.splitlines()[0].split()[2]
    resumed = farside("dr", "resume", run, *lab.conn("b"), check=False)
    assert cli.returncode == 130, f"exit {cli.returncode}:\n{seen}"
    assert f"farside dr resume {run}" in seen and "lost the connection" not in seen, seen
    assert resumed.returncode == 0, resumed.stderr


def test_a_connection_lost_mid_run_names_the_run_and_its_resume(lab: Lab) -> None:
    """Issue 14, 7: when farside dr lost its connection mid-run it printed no run uuid and no resume
    command. The DR site's server dies during recover; the CLI names the run and how to go on."""
    farside("lab", "disaster", str(lab.root))
    cli = subprocess.Popen(
        [*FARSIDE, "dr", "failover", *lab.conn("b"), "--lun-dir", str(lab.root / "luns-b"), "--split-mirrors",
         "--all", "--yes", "--declare-site-down", "Site A"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert cli.stderr is not None
    seen = ""
    while True:
        line = cli.stderr.readline()
        seen += line
        assert line, f"the failover ended before its recover step:\n{seen}"
        if line.startswith("recover: 1/"):
            os.kill(lab.server_pid("b"), signal.SIGKILL)
            break
    _, rest = cli.communicate(timeout=120)
    seen += rest
    run = seen.splitlines()[0].split()[2]
    assert cli.returncode == 1 and "Traceback" not in seen, seen
    assert "lost the connection" in seen and f"farside dr resume {run}" in seen, seen
    farside("lab", "start", str(lab.root), "b")
    resumed = farside("dr", "resume", run, *lab.conn("b"), check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert "Failover (succeeded)" in resumed.stdout


def test_ctrl_c_while_the_command_starts_is_not_a_traceback() -> None:
    cli = subprocess.Popen(
        [*FARSIDE, "dr", "runs", "--server", "127.0.0.1:1", "--password-file", "/dev/null"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_sigint_as_a_terminal,
    )  # fmt: skip
    time.sleep(0.15)  # the interpreter is up, the commands are being imported
    cli.send_signal(signal.SIGINT)
    _, err = cli.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert cli.returncode == 130, (cli.returncode, err)

"""``farside dr`` run for real against two pool servers: scripted failover, test failover with its
cleanup, the wizard in a pseudo-terminal, the source-still-running refusal, resume and cleanup."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pexpect
import XenAPI

from pools import ADMIN_PASSWORD, PoolServer, kill_qemus
from vms import shop_site

FARSIDE = [sys.executable, "-m", "farside.cli.main"]
# Generous: the machine is shared and QEMU runs under TCG.
TIMEOUT_S = 240


def farside(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "FARSIDE_PASSWORD": ADMIN_PASSWORD, **env}
    return subprocess.run(
        [*FARSIDE, "dr", *args], capture_output=True, text=True, env=environ, stdin=subprocess.DEVNULL,
        timeout=TIMEOUT_S,
    )  # fmt: skip


def copied_site(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path, lose_a: bool = True) -> dict[str, str]:
    """Site A's shop on a LUN copied to ``copy`` (the mirror's job); A lost unless ``lose_a``."""
    a, _ = two_pools
    _, tags = shop_site(a, tmp_path / "lun")
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    if lose_a:
        a.stop()
        kill_qemus(a.data_dir / "run")
    return tags


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def power_states(s: XenAPI.Session) -> dict[str, str]:
    records = s.xenapi.VM.get_all_records().values()
    return {r["name_label"]: r["power_state"] for r in records if not (r["is_control_domain"] or r["is_a_template"])}


def test_scripted_failover_then_runs_and_report(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    copied_site(two_pools, tmp_path)
    a, b = two_pools
    lun = str(tmp_path / "copy")
    # Site A is gone: its server does not answer, so nothing there can still run.
    done = farside(
        "failover", "--server", b.url, "--source-server", a.url, "--lun", lun, "--all", "--confirm-split",
        "--declare-site-down", "Site A", FARSIDE_SOURCE_PASSWORD=ADMIN_PASSWORD,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"cannot reach {a.url}" in done.stderr and "going on without asking it" in done.stderr
    assert "Failover (succeeded)" in done.stdout
    assert "Recover vApp shop - Succeeded" in done.stdout and "Start VM lone - Succeeded" in done.stdout
    assert "recover: 0/2" in done.stderr and "start: 0/3" in done.stderr  # each count's total from the start
    assert power_states(b.session()) == {"shop-db": "Running", "shop-web": "Running", "lone": "Running"}
    uuid = done.stderr.split(" run ")[1].split()[0]

    listed = farside("runs", "--server", b.url)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()[:2]
    assert header.split()[:4] == ["uuid", "kind", "state", "created"]
    assert row.split()[:3] == [uuid, "failover", "done"]
    report = farside("report", uuid[:8], "--server", b.url, "--json")
    assert report.returncode == 0, report.stderr
    parsed = json.loads(report.stdout)
    assert parsed["outcome"] == "succeeded" and parsed["run"] == uuid and parsed["kind"] == "failover"
    text = farside("report", uuid, "--server", b.url)
    assert "Failover (succeeded)" in text.stdout and "State: done" in text.stdout

    # Bad input: one line, exit 2, nothing done.
    again = farside("resume", uuid, "--server", b.url)
    assert again.returncode == 2 and "nothing to resume" in one_line(again.stderr)
    unknown = farside("report", "ffff", "--server", b.url)
    assert unknown.returncode == 2 and "farside dr runs" in one_line(unknown.stderr)
    wrong = farside("runs", "--server", b.url, FARSIDE_PASSWORD="nope")
    assert wrong.returncode == 2 and "user name or password" in one_line(wrong.stderr)
    nothing = farside("failover", "--server", b.url, "--lun", str(tmp_path / "copy"))
    assert nothing.returncode == 2 and "--all" in one_line(nothing.stderr)


def test_test_failover_ends_with_its_cleanup(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    copied_site(two_pools, tmp_path, lose_a=False)
    b = two_pools[1]
    sb = b.session()
    before = {cls: set(getattr(sb.xenapi, cls).get_all()) for cls in ("VM", "SR", "VDI", "network", "PBD")}
    done = farside("test", "--server", b.url, "--lun-dir", str(tmp_path), "--vapp", "shop", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["kind"] == "test" and report["outcome"] == "succeeded"
    assert report["cleanup"]["state"] == "cleaned up" and "exactly as before" in report["cleanup"]["result"]
    assert report["power"] == "start_paused" and list(report["selected"]) == ["Site A"]
    [[shop]] = report["selected"].values()
    assert shop.startswith("vApp shop: ") and set(shop[11:].split(", ")) == {"shop-db", "shop-web"}
    assert {cls: set(getattr(sb.xenapi, cls).get_all()) for cls in before} == before


def test_vms_running_at_the_source_stop_the_run_until_resumed(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path
) -> None:
    a, b = two_pools
    sa, tags = shop_site(a, tmp_path / "lun")
    lone = sa.xenapi.VM.get_by_uuid(next(u for u, t in tags.items() if t == "lone"))
    sa.xenapi.VM.start(lone, False, False)
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    source = ["--source-server", a.url]
    args = ["--server", b.url, *source, "--lun", str(tmp_path / "copy"), "--vm", "lone", "--power", "none"]
    refused = farside("failover", *args, "--confirm-split", FARSIDE_SOURCE_PASSWORD=ADMIN_PASSWORD)
    assert refused.returncode == 1
    assert "precheck - Failed" in refused.stdout and "still Running in the source pool" in refused.stdout
    uuid = refused.stderr.split(" run ")[1].split()[0]
    assert f"farside dr resume {uuid}" in refused.stderr and f"farside dr cleanup {uuid}" in refused.stderr
    assert "Traceback" not in refused.stderr

    sa.xenapi.VM.hard_shutdown(lone)
    resumed = farside("resume", uuid[:10], "--server", b.url, *source, FARSIDE_SOURCE_PASSWORD=ADMIN_PASSWORD)
    assert resumed.returncode == 0, resumed.stderr
    assert "Failover (succeeded)" in resumed.stdout and "Recover VM lone - Succeeded" in resumed.stdout
    sb = b.session()
    assert power_states(sb) == {"lone": "Halted"}
    cleaned = farside("cleanup", uuid, "--server", b.url)
    assert cleaned.returncode == 0 and "DR tasks" in cleaned.stdout
    assert sb.xenapi.DR_task.get_all() == [] and power_states(sb) == {"lone": "Halted"}  # recovered VMs stay


def terminal(tmp_path: Path, *args: str) -> pexpect.spawn:
    """``farside dr ARGS`` in a pseudo-terminal; what it draws goes to wizard.log for a failure's message."""
    env = {**os.environ, "FARSIDE_PASSWORD": ADMIN_PASSWORD, "TERM": "xterm", "COLUMNS": "140", "LINES": "50"}
    child = pexpect.spawn(
        FARSIDE[0], [*FARSIDE[1:], "dr", *args], env=env, encoding="utf-8", timeout=120, dimensions=(50, 140)
    )
    child.logfile_read = open(tmp_path / "wizard.log", "w")  # noqa: SIM115 - closed with the child
    return child


def test_the_wizard_in_a_terminal(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    copied_site(two_pools, tmp_path)
    b = two_pools[1]
    child = terminal(tmp_path, "failover", "--server", b.url, "--lun", str(tmp_path / "copy"))
    try:
        child.expect("Storage found")
        child.expect("unknown")  # nobody manages the copy's replication here
        child.expect(r"Attach these SRs.*\?")
        child.sendline("y")
        child.expect("nothing shows that the source site no longer runs the VMs")
        child.expect("type its pool's name to declare it down")
        child.sendline("Site A")
        child.expect("Site A")  # the source pool, with the age of its metadata
        child.expect(r"1 \[x\] vApp shop: shop-db, shop-web")
        child.expect(r"2 \[x\] VM lone")
        child.expect("Enter when done")
        child.sendline("1")  # untick the vApp
        child.expect(r"1 \[ \] vApp shop")
        child.expect("Enter when done")
        child.sendline("")
        child.expect("Power option")
        child.sendline("start")
        child.expect("Pre-checks")
        child.expect("nobody here manages")
        child.expect("Do you confirm the storage array no longer mirrors")
        child.sendline("y")
        child.expect("Ready: failover of 0 vApp")
        child.expect("Go ahead with the failover")
        child.sendline("y")
        child.expect("recover")
        child.expect("Failover \\(succeeded\\)")
        child.expect("Start VM lone - Succeeded")
        child.expect(pexpect.EOF)
    finally:
        child.close()
        child.logfile_read.close()
    assert child.exitstatus == 0, (tmp_path / "wizard.log").read_text()
    assert power_states(b.session()) == {"lone": "Running"}


def test_a_test_failover_in_a_terminal_waits_before_its_cleanup(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path
) -> None:
    copied_site(two_pools, tmp_path, lose_a=False)
    b = two_pools[1]
    child = terminal(tmp_path, "test", "--server", b.url, "--lun", str(tmp_path / "copy"), "--vm", "lone")
    try:
        child.expect(r"Attach these SRs.*\?")
        child.sendline("")  # the default: yes
        child.expect(r"1 \[ \] vApp shop")  # --vm lone: only lone is ticked
        child.expect(r"2 \[x\] VM lone")
        child.expect("Enter when done")
        child.sendline("")
        child.expect("Power option")
        child.sendline("none")
        child.expect("Pre-checks: all passed")
        child.expect("Go ahead with the test failover")
        child.sendline("y")
        child.expect("Test failover \\(succeeded\\)")
        child.expect("Press Enter to clean up")
        assert power_states(b.session()) == {"lone": "Halted"}  # recovered, waiting for the operator
        child.sendline("")
        child.expect("exactly as before the test")
        child.expect(pexpect.EOF)
    finally:
        child.close()
        child.logfile_read.close()
    assert child.exitstatus == 0, (tmp_path / "wizard.log").read_text()
    assert power_states(b.session()) == {}


def test_a_farside_mirror_is_split_only_when_asked(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    """A LUN replicated by ``farside mirror``: the run stops before attaching it, names the flag,
    and ``resume --split-mirrors`` splits the mirror through the adapter and goes on."""
    a, b = two_pools
    shop_site(a, tmp_path / "lun")
    state = ["--state-dir", str(tmp_path / "mirrors")]
    mirror = [*FARSIDE, "mirror"]
    subprocess.run([*mirror, "create", "m", "--source", str(tmp_path / "lun"), "--target", str(tmp_path / "copy"),
                    *state], check=True, capture_output=True)  # fmt: skip
    subprocess.run([*mirror, "sync", "m", *state], check=True, capture_output=True)
    sa = a.session()
    for pbd in sa.xenapi.PBD.get_all():  # site A lets go of its LUN (its lease) before it is lost
        sa.xenapi.PBD.unplug(pbd)
    a.stop()
    stopped = farside("failover", "--server", b.url, "--lun", str(tmp_path / "copy"), "--vm", "lone", "--power", "none")
    assert stopped.returncode == 1
    assert "split - Failed" in stopped.stdout and "is not split" in stopped.stderr
    uuid = stopped.stderr.split(" run ")[1].split()[0]
    assert f"farside dr resume {uuid} --split-mirrors" in stopped.stderr
    assert "split_mirrors=" not in stopped.stderr  # the hints name the command line's flags
    assert b.session().xenapi.SR.get_all() == []  # nothing attached while the mirror replicates

    resumed = farside("resume", uuid, "--server", b.url, "--split-mirrors")
    assert resumed.returncode == 0, resumed.stderr
    assert "Recover VM lone - Succeeded" in resumed.stdout
    # No session on A, no declaration: the storage's own proof fenced the run (issue 14, 1).
    assert f"Fencing: mirror m: no pool holds its other side {tmp_path / 'lun'}" in resumed.stdout
    status = subprocess.run([*mirror, "status", "m", "--json", *state], check=True, capture_output=True, text=True)
    assert json.loads(status.stdout)["state"] == "split"


def test_luns_with_no_sr_leave_no_run_behind(server: PoolServer, tmp_path: Path) -> None:
    """Nothing found at the LUN paths: one line saying so, exit 2, and no failed run to resume."""
    missing = farside("failover", "--server", server.url, "--lun", str(tmp_path / "nonexistent"), "--all", "--yes")
    assert missing.returncode == 2 and missing.stdout == ""
    line = one_line(missing.stderr)
    assert "does not exist" in line and "--lun" in line and "nothing was done" in line
    (tmp_path / "empty").mkdir()
    empty = farside("test", "--server", server.url, "--lun", str(tmp_path / "empty"), "--all", "--json")
    assert empty.returncode == 2 and "no SR found on" in one_line(empty.stderr) and empty.stdout == ""
    assert server.session().xenapi.DR_run.get_all() == []


def test_one_run_at_a_time_on_a_lun(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    """Issue 14, 6: two failovers on the same LUNs both passed the pre-check, the loser failed at
    recover, and both reports named the same SRs as introduced by them. Now a run claims its LUNs
    in the target pool before it attaches; a second run is refused before attaching, naming the
    first, and may go on once the first has ended."""
    copied_site(two_pools, tmp_path)
    b = two_pools[1]
    sb = b.session()
    lun = str(tmp_path / "copy")
    options = {"luns": lun, "confirm_split": "true", "power": "none", "declare_site_down": "Site A"}
    first = sb.xenapi.DR_run.create("failover", {**options, "pause_after": "precheck"})
    sb.xenapi.DR_run.start(first)  # the first stops after its pre-checks: LUN claimed, SR attached
    first_uuid = sb.xenapi.DR_run.get_uuid(first)
    assert sb.xenapi.DR_run.get_state(first) == "paused" and len(sb.xenapi.DR_run.get_luns(first)) == 2

    flags = ["--lun", lun, "--all", "--power", "none", "--confirm-split", "--declare-site-down", "Site A"]
    second = farside("failover", "--server", b.url, *flags)
    assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr
    assert f"in use by the failover run {first_uuid} (paused)" in second.stderr, second.stderr
    uuid = second.stderr.split(" run ")[1].split()[0]
    assert f"farside dr resume {uuid}" in second.stderr
    loser = sb.xenapi.DR_run.get_by_uuid(uuid)
    steps = json.loads(sb.xenapi.DR_run.get_steps(loser))
    assert steps["claim"]["state"] == "failed" and "attach" not in steps
    assert json.loads(sb.xenapi.DR_run.get_report_json(loser))["srs_introduced"] == []
    assert sb.xenapi.DR_run.get_luns(loser) == []

    sb.xenapi.DR_run.set_options(first, options)  # no more pauses
    sb.xenapi.DR_run.resume(first)
    assert sb.xenapi.DR_run.get_state(first) == "done" and sb.xenapi.DR_run.get_luns(first) == []
    resumed = farside("resume", uuid, "--server", b.url)  # the LUN is free: the claim passes now
    assert json.loads(sb.xenapi.DR_run.get_steps(loser))["claim"]["state"] == "done", resumed.stderr

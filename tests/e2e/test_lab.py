"""``farside lab``: two sites on this machine, run through the real ``farside`` command."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import XenAPI


def farside(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "farside.cli.main", *args], capture_output=True, text=True, timeout=300
    )
    if check:
        assert done.returncode == 0, done.stderr + done.stdout
    return done


def lab_processes(root: Path) -> list[str]:
    """Command lines of live processes that belong to the lab (its path is in them)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if str(root) in cmdline and state != "Z" and "pytest" not in cmdline:
            found.append(cmdline)
    return found


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "lab"
    try:
        yield root
    finally:
        farside("lab", "down", str(root), check=False)


def test_up_status_disaster_start_down(lab: Path) -> None:
    out = farside("lab", "up", str(lab), "--vms", "3", "--vapps", "1", "--luns", "2").stdout
    assert "The lab is up" in out and "--password-file" in out
    status = json.loads(farside("lab", "status", str(lab), "--json").stdout)
    a, b = status["sites"]["a"], status["sites"]["b"]
    assert a["server"] == "up" and b["server"] == "up"
    assert {vm["name"]: vm["power_state"] for vm in a["vms"]} == {
        "shop-db": "Running", "shop-web": "Running", "vm1": "Running",
    }  # fmt: skip
    assert b["vms"] == [] and b["srs"] == []
    assert status["mirror_daemon"] is True
    assert [(m["name"], m["state"]) for m in status["mirrors"]] == [("lun1", "replicating"), ("lun2", "replicating")]
    # The mirrors' first cycle is complete: site B holds both LUNs, with site A's metadata.
    for lun in ("lun1", "lun2"):
        assert (lab / "luns-b" / lun / ".farside-sr" / "sr.json").exists()
    assert "mirror lun1" in farside("lab", "status", str(lab)).stdout
    assert (lab / "snapshots").is_dir()  # docs/lab.md: where test failovers' mirror snapshots go

    out = farside("lab", "disaster", str(lab)).stdout
    assert "server killed, 3 QEMU processes killed" in out
    status = json.loads(farside("lab", "status", str(lab), "--json").stdout)
    assert status["sites"]["a"]["server"] == "down" and status["sites"]["b"]["server"] == "up"
    assert not [p for p in lab_processes(lab) if "qemu" in p and "site-a" in p]

    # Another program took site A's port while it was down: the site moves to a free one.
    port = json.loads((lab / "lab.json").read_text())["ports"]["a"]
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        out = farside("lab", "start", str(lab), "a").stdout
    assert f"127.0.0.1:{port} is taken by another program" in out
    assert json.loads((lab / "lab.json").read_text())["ports"]["a"] != port
    status = json.loads(farside("lab", "status", str(lab), "--json").stdout)
    assert {vm["power_state"] for vm in status["sites"]["a"]["vms"]} == {"Halted"}  # their QEMUs died

    assert "stopped: mirror daemon" in farside("lab", "down", str(lab)).stdout
    assert lab_processes(lab) == []
    assert "nothing was running" in farside("lab", "down", str(lab)).stdout  # twice is fine


def test_bad_input_gets_one_line_and_an_exit_code(lab: Path, tmp_path: Path) -> None:
    for args, text in [
        (("lab", "status", str(tmp_path / "nowhere")), "holds no lab: make one with 'farside lab up"),
        (("lab", "up", str(lab), "--vms", "1", "--vapps", "1"), "need --vms 2 at least"),
        (("lab", "up", str(lab), "--vms", "-3", "--vapps", "0"), "--vms must be 1 or more"),
        (("lab", "up", "/etc/passwd"), "/etc/passwd is not a directory: give a new or empty directory"),
        (("lab", "up", "/etc/passwd/lab"), "a file is in its path"),
        (("lab", "disaster", str(tmp_path / "nowhere")), "holds no lab"),
    ]:
        done = farside(*args, check=False)
        assert done.returncode == 2 and text in done.stderr and "Traceback" not in done.stderr, done.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    done = farside("lab", "up", str(tmp_path / "full"), check=False)
    assert done.returncode == 2 and "is not empty" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mkfs.xfs") is None, reason="needs root and xfsprogs")
def test_reflink_lun(lab: Path) -> None:
    """``up --reflink`` adds an XFS LUN in a loop file at site A, where a VDI snapshot shares its
    source's blocks; ``down`` unmounts it and detaches the loop device."""
    out = farside("lab", "up", str(lab), "--vms", "1", "--vapps", "0", "--luns", "1", "--reflink").stdout
    assert "Reflink LUN" in out
    ports = json.loads((lab / "lab.json").read_text())["ports"]
    s = XenAPI.Session(f"http://127.0.0.1:{ports['a']}")
    s.xenapi.login_with_password("root", (lab / "password").read_text().strip(), "1.0", "tests")
    [sr] = s.xenapi.SR.get_by_name_label("Reflink LUN")
    vdi = s.xenapi.VDI.create(
        {"SR": sr, "virtual_size": str(64 << 20), "type": "user", "name_label": "data", "sharable": False,
         "read_only": False, "other_config": {}, "sm_config": {"type": "raw"}}
    )  # fmt: skip
    mount = lab / "luns-a" / "reflink"
    with open(mount / s.xenapi.VDI.get_location(vdi), "r+b") as f:
        f.write(os.urandom(8 << 20))
    snap = s.xenapi.VDI.snapshot(vdi, {})
    extents = subprocess.run(["filefrag", "-v", str(mount / s.xenapi.VDI.get_location(snap))],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "shared" in extents  # the copy is a reflink, not a second set of blocks
    s.xenapi.session.logout()
    out = farside("lab", "down", str(lab)).stdout
    assert "reflink LUN" in out
    assert str(mount) not in Path("/proc/self/mounts").read_text()
    assert subprocess.run(["losetup", "-j", str(lab / "reflink.img")], capture_output=True, text=True).stdout == ""

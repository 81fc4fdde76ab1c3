"""``farside xe`` snapshot and schedule commands against a real pool server, output pinned by
golden text (tests/e2e/golden/xe-snapshot-*.txt, with uuids replaced by names)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import XenAPI

from pools import ADMIN_PASSWORD, PoolServer
from vms import bootable_vm, make_sr

GOLDEN = Path(__file__).parent / "golden"


def xe(server: PoolServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARSIDE_")}
    env["HOME"] = "/nonexistent-home"
    argv = [sys.executable, "-m", "farside.cli.main", "xe", "-s", server.url, "-pw", ADMIN_PASSWORD, *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def ok(server: PoolServer, *args: str) -> str:
    result = xe(server, *args)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return result.stdout


def test_snapshot_commands(server: PoolServer, tmp_path: Path) -> None:
    """vm-snapshot, snapshot-list, snapshot-revert (refused for another VM), vmss-*, snapshot-uninstall."""
    s: XenAPI.Session = server.session()
    sr = make_sr(s, tmp_path / "lun")
    web = bootable_vm(server, s, sr, "web")
    other = s.xenapi.VM.get_uuid(bootable_vm(server, s, sr, "other"))
    web_uuid = s.xenapi.VM.get_uuid(web)
    snap = ok(server, "vm-snapshot", "vm=web", "new-name-label=before-upgrade").strip()
    names = {snap: "<snapshot>", web_uuid: "<web>", other: "<other>"}

    def named(text: str) -> str:
        for uuid, name in names.items():
            text = text.replace(uuid, name)
        return text

    listed = ok(server, "snapshot-list", "params=uuid,name-label,is-a-snapshot,snapshot-of,power-state")
    assert named(listed) == (GOLDEN / "xe-snapshot-list.txt").read_text()
    result = xe(server, "snapshot-revert", f"snapshot-uuid={snap}", f"uuid={other}")
    assert (
        result.returncode == 1
        and named(result.stderr) == "Error: The snapshot <snapshot> is not a snapshot of VM <other>.\n"
    )
    ok(server, "snapshot-revert", f"snapshot-uuid={snap}", f"uuid={web_uuid}")
    assert s.xenapi.VM.get_parent(web) == s.xenapi.VM.get_by_uuid(snap)

    vmss = ok(server, "vmss-create", "name-label=nightly", "type=snapshot", "frequency=daily", "schedule:hour=2",
              "schedule:min=30", "retained-snapshots=3").strip()  # fmt: skip
    names[vmss] = "<vmss>"
    ok(server, "vm-param-set", f"uuid={web_uuid}", f"snapshot-schedule={vmss}")
    shown = ok(server, "vmss-list", "params=uuid,name-label,type,frequency,schedule,retained-snapshots,VMs")
    assert named(shown) == (GOLDEN / "xe-vmss-list.txt").read_text()
    result = xe(server, "vmss-destroy", f"uuid={vmss}")
    assert result.returncode == 1 and "VMSS_HAS_VM" in result.stderr

    disks = len(s.xenapi.VDI.get_all())
    ok(server, "snapshot-uninstall", f"snapshot-uuid={snap}")
    assert len(s.xenapi.VDI.get_all()) == disks - 1
    assert ok(server, "snapshot-list", "--minimal") == "\n"

"""`make demo`: a failover and a failback between two sites on this machine, with real VMs.

The story (README.md): a lab of two pools with mirrored LUNs and a running workload at site A;
site A is lost; site B splits the mirrors and recovers the VMs from the mirrored disks; the
mirrors turn round; site A comes back with stale copies; the VMs fail back to A; the mirrors turn
round again; and a test failover at B on mirror snapshots proves B can take over, without
touching A or the replication. Every step runs the real `farside` commands (shown as they run)
and the whole story exits non-zero at the first step that fails.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from farside.cli.lab.layout import SITE_NAMES, Lab
from farside.dr.session import XmlRpcSession

LEASE_WAIT_S = 45.0  # a dead pool's lease on its LUNs lasts 30 s; resync waits it out


class StepFailed(Exception):
    pass


def farside(*args: str, quiet: bool = False) -> str:
    """Run a ``farside`` command as an operator would, showing it and what it prints."""
    print(f"  $ farside {shlex.join(args)}")
    done = subprocess.run([sys.executable, "-m", "farside.cli.main", *args], capture_output=True, text=True)
    if not quiet:
        for line in done.stdout.rstrip().splitlines():
            print(f"    {line}")
    if done.returncode != 0:
        raise StepFailed(f"farside {args[0]} {args[1] if len(args) > 1 else ''}: {done.stderr.strip()}")
    return done.stdout


class Story:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.timings: list[tuple[str, float]] = []
        self.facts: dict[str, Any] = {}
        self.reports: list[tuple[str, str]] = []

    @property
    def lab(self) -> Lab:
        return Lab.load(self.root)

    def pool(self, site: str) -> list[str]:
        lab = self.lab
        return ["--server", lab.url(site), "--user", "root", "--password-file", str(lab.password_file)]

    def xe(self, site: str, *args: str) -> str:
        lab = self.lab
        url = lab.url(site).removeprefix("http://")
        host, port = url.split(":")
        return farside("xe", "-s", host, "-p", port, "-u", "root", "-pwf", str(lab.password_file), *args)

    def mirror(self, *args: str) -> str:
        return farside("mirror", *args, "--state-dir", str(self.lab.mirror_dir))

    def guests(self, site: str) -> dict[str, dict[str, Any]]:
        """The site's VMs by ref, its host's control domain and templates aside (no guests to recover)."""
        records = self.session(site).call("VM.get_all_records")
        return {ref: r for ref, r in records.items() if not (r["is_control_domain"] or r["is_a_template"])}

    def session(self, site: str) -> XmlRpcSession:
        lab = self.lab
        return XmlRpcSession(lab.url(site), "root", lab.password())

    def step(self, number: int, title: str, action: Callable[[], None]) -> None:
        print(f"\n=== {number}. {title}")
        began = time.monotonic()
        action()
        seconds = time.monotonic() - began
        self.timings.append((f"{number}. {title}", seconds))
        print(f"  ({seconds:.1f} s)")

    def dr(self, kind: str, site: str, *args: str) -> dict[str, Any]:
        out = farside("dr", kind, *self.pool(site), *args, "--all", "--yes", "--json", quiet=True)
        report: dict[str, Any] = json.loads(out)
        run = self.session(site).call("DR_run.get_all_records")
        text = max(run.values(), key=lambda r: r["created"])["report"]
        for line in text.rstrip().splitlines():
            print(f"    {line}")
        self.reports.append((f"{kind} at site {site.upper()}", text))
        return report

    # -- the steps -------------------------------------------------------------------------------

    def up(self) -> None:
        farside("lab", "up", str(self.root), "--vms", "6", "--vapps", "2")
        farside("lab", "status", str(self.root))

    def disaster(self) -> None:
        status = json.loads(self.mirror("status", "--json"))
        self.facts["replication RPO at the disaster"] = max(m["rpo_seconds"] for m in status)
        farside("lab", "disaster", str(self.root))

    def failover(self) -> None:
        # Site A is lost: the operator declares it down (checked: its address must not answer).
        source = ["--source-server", self.lab.url("a"), "--source-password-file", str(self.lab.password_file)]
        declared = ["--declare-site-down", SITE_NAMES["a"]]
        report = self.dr("failover", "b", *source, *declared, "--lun-dir", str(self.root / "luns-b"), "--split-mirrors")
        if report["outcome"] != "succeeded":
            raise StepFailed(f"the failover {report['outcome']}")
        self.facts["recovery time (failover run)"] = report["total_seconds"]
        self.facts["metadata RPO (age at failover)"] = max(a for a in report["metadata_age_seconds"].values() if a)
        s = self.session("b")
        for vm in sorted(self.guests("b").values(), key=lambda r: r["name_label"]):
            boot = [line for line in s.serial(vm["uuid"]).decode(errors="replace").splitlines() if "BOOT" in line]
            print(f"    {vm['name_label']:<10} {vm['power_state']:<8} serial: {boot[0] if boot else '(nothing yet)'}")
            if vm["power_state"] != "Running" or not boot:
                raise StepFailed(f"{vm['name_label']} did not boot at site B")

    def reverse(self) -> None:
        for lun in self.lab.luns:
            self.mirror("reverse", lun)
            deadline = time.monotonic() + LEASE_WAIT_S
            while True:
                try:
                    self.mirror("resync", lun)
                    break
                except StepFailed as exc:
                    # Site A's server died holding a lease on its LUN: the array (here, the mirror)
                    # will not write into a LUN a pool may still use until that lease has run out.
                    if "is plugged" not in str(exc) or time.monotonic() > deadline:
                        raise
                    print("    (site A's lease on the LUN has not run out yet: waiting)")
                    time.sleep(3)

    def a_returns(self) -> None:
        farside("lab", "start", str(self.root), "a")
        farside("lab", "status", str(self.root))
        s = self.session("a")
        states = {r["power_state"] for r in self.guests("a").values()}
        attached = [p["currently_attached"] for p in s.call("PBD.get_all_records").values()]
        if states != {"Halted"} or any(attached):
            raise StepFailed(f"site A should have halted VMs and unplugged SRs: {states}, {attached}")

    def prepare_failback(self) -> None:
        s = self.session("b")
        for app in s.call("VM_appliance.get_all_records").values():
            self.xe("b", "appliance-shutdown", f"uuid={app['uuid']}")
        for vm in self.guests("b").values():
            if vm["power_state"] == "Running":
                self.xe("b", "vm-shutdown", f"uuid={vm['uuid']}")
        for lun in self.lab.luns:
            self.mirror("sync", lun)
            self.mirror("split", lun)

    def failback(self) -> None:
        source = ["--source-server", self.lab.url("b"), "--source-password-file", str(self.lab.password_file)]
        report = self.dr("failback", "a", *source, "--lun-dir", str(self.root / "luns-a"))
        if report["outcome"] != "succeeded":
            raise StepFailed(f"the failback {report['outcome']}")
        self.facts["recovery time (failback run)"] = report["total_seconds"]
        self.xe("a", "vm-list", "params=name-label,power-state")

    def release_b(self) -> None:
        # Site B forgets what it recovered (the VMs run at A again) and lets go of the LUNs,
        # so that they can be replication targets again; the disks themselves are untouched.
        s = self.session("b")
        for ref in self.guests("b"):
            s.call("VM.destroy", ref)
        for ref in s.call("VM_appliance.get_all"):
            s.call("VM_appliance.destroy", ref)
        for sr in s.call("SR.get_all_records").values():
            for pbd in sr["PBDs"]:
                self.xe("b", "pbd-unplug", f"uuid={s.call('PBD.get_uuid', pbd)}")
            self.xe("b", "sr-forget", f"uuid={sr['uuid']}")
        for lun in self.lab.luns:
            self.mirror("reverse", lun)
            self.mirror("resync", lun)

    def test_failover(self) -> None:
        lab = self.lab
        before = self.guests("a")
        args = []
        for lun in lab.luns:
            lab.snapshot_dir(lun).parent.mkdir(parents=True, exist_ok=True)
            self.mirror("snapshot", lun, str(lab.snapshot_dir(lun)))
            args += ["--lun", str(lab.snapshot_dir(lun))]
        report = self.dr("test", "b", *args)
        if report["outcome"] != "succeeded":
            raise StepFailed(f"the test failover {report['outcome']}")
        s = self.session("b")
        if self.guests("b") or s.call("SR.get_all"):
            raise StepFailed("site B is not as it was before the test failover")
        after = self.guests("a")
        if {r["uuid"]: r["power_state"] for r in after.values()} != {
            r["uuid"]: r["power_state"] for r in before.values()
        }:
            raise StepFailed("site A changed during the test failover")
        states = {m["state"] for m in json.loads(self.mirror("status", "--json"))}
        if states != {"replicating"}:
            raise StepFailed(f"the mirrors should still replicate: {states}")
        self.facts["test failover run"] = report["total_seconds"]

    def summary(self) -> None:
        print("\n=== Summary")
        width = max(len(title) for title, _ in self.timings)
        for title, seconds in self.timings:
            print(f"  {title:<{width}} {seconds:6.1f} s")
        print(f"  {'the whole story':<{width}} {sum(s for _, s in self.timings):6.1f} s")
        for name, value in self.facts.items():
            print(f"  {name:<{width}} {value:6.1f} s")
        for title, text in self.reports:
            print(f"\n--- Report: {title}")
            print(text.rstrip())


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="farside-demo-")) / "lab"
    story = Story(root)
    steps = [
        ("lab up: two sites, VMs and vApps running at A, mirrors A→B", story.up),
        ("disaster: site A's server and QEMUs are killed", story.disaster),
        ("failover at B (--split-mirrors): attach, recover, start in order, protect", story.failover),
        ("mirrors reversed and resynchronised: B→A", story.reverse),
        ("site A's server restarts: VMs Halted, SRs refused (mirror targets)", story.a_returns),
        ("prepare failback: B's VMs shut down, final sync, split", story.prepare_failback),
        ("failback at A: A's stale copies replaced (version rule), started", story.failback),
        ("B releases the SRs; mirrors reversed and resynchronised: A→B", story.release_b),
        ("test failover at B on mirror snapshots, then cleanup", story.test_failover),
    ]
    succeeded = False
    try:
        for number, (title, action) in enumerate(steps, 1):
            story.step(number, title, action)
        story.summary()
        print("\nThe demo succeeded.")
        succeeded = True
        return 0
    except StepFailed as exc:
        print(f"\nThe demo FAILED: {exc}", file=sys.stderr)
        print(f"(the lab's logs are kept in {root})", file=sys.stderr)
        return 1
    finally:
        if (root / "lab.json").exists():
            # Everything stops either way; the files stay only when something went wrong.
            farside("lab", "down", str(root), *(["--purge"] if succeeded else []))
        if succeeded:
            root.parent.rmdir()


if __name__ == "__main__":
    sys.exit(main())

"""DR runs on two real sites: an engine killed at every step and resumed ends as an uninterrupted run
does, and a failback after B's LUN is copied back to A replaces A's stale copies (version rule)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from farside.config import Fencing
from farside.dr.plan import STEPS
from farside.storage import lease

from pools import ADMIN_PASSWORD, PoolServer, kill_qemus, make_pool, pair
from vms import shop_site, wait_serial

pytestmark = pytest.mark.e2e

# The killed engine runs in its own process over XML-RPC, as the CLI would run it. Once the step to
# kill it in has begun, each journal write waits THROTTLE_S first: the step stays "started" for at
# least that long (even one that makes no other call, as select), so the parent, polling the
# journal, catches the engine inside it. Steps before that one run at full speed.
THROTTLE_S = 0.15
CHILD = """
import json, sys, time
from farside.dr import context
from farside.dr.runner import Engine
from farside.dr.session import XmlRpcSession

# Every item's progress written at once, so that a kill can land between two items of a step.
context.SAVE_INTERVAL_S = 0

url, password, run, step, throttle = sys.argv[1:5] + [float(sys.argv[5])]


class Throttled(XmlRpcSession):
    def call(self, method, *args):
        steps = json.loads(args[2].get("steps", "{}")) if method == "DR_run.save" else {}
        if steps.get(step, {}).get("state") in ("started", "done"):
            time.sleep(throttle)
        return super().call(method, *args)


Engine(Throttled(url, "root", password), run).run()
"""
# After the kill the server finishes the calls the dead engine had in flight (a DR_task.create,
# a VM.start); an operator never resumes faster than this, but a VM.start may well take longer.
SETTLE_S = 0.3
# Where the kill lands: as soon as the step is journaled "started", or once its data shows that
# part of it is done (recover: the vApp; start: the first order group), so the rest is in flight.
PROGRESS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "recover": lambda data: len(data.get("done", [])) >= 1,
    "start": lambda data: len(data.get("vms", {})) >= 1,
}


def wait_task(s: XenAPI.Session, task: str) -> None:
    while s.xenapi.task.get_status(task) == "pending":
        time.sleep(0.05)
    assert s.xenapi.task.get_status(task) == "success", s.xenapi.task.get_error_info(task)


def run(s: XenAPI.Session, kind: str, options: dict[str, str]) -> str:
    ref = s.xenapi.DR_run.create(kind, options)
    wait_task(s, s.xenapi.Async.DR_run.start(ref))
    return str(ref)


def pool_state(s: XenAPI.Session) -> dict[str, Any]:
    """What a run leaves in a pool, by uuid; objects a run makes with fresh uuids (its PBDs, this
    pool's metadata VDI, networks recovery creates) by what they are instead."""
    pool = s.xenapi.pool.get_all()[0]
    apps = s.xenapi.VM_appliance.get_all_records()
    srs = s.xenapi.SR.get_all_records()

    def vm(r: dict[str, Any]) -> tuple[str, int, str, str]:
        app = apps[r["appliance"]]["uuid"] if r["appliance"] in apps else ""
        return r["uuid"], int(r["version"]), r["power_state"], app

    def vdi(r: dict[str, Any]) -> str:
        return f"own metadata on {srs[r['SR']]['uuid']}" if r["metadata_of_pool"] == pool else str(r["uuid"])

    def network(r: dict[str, Any]) -> str:
        made = r["other_config"].get("farside-created-by") == "recovery"
        return f"made by recovery: {r['name_label']}" if made else str(r["uuid"])

    def records(cls: str) -> list[dict[str, Any]]:
        return list(getattr(s.xenapi, cls).get_all_records().values())

    return {
        "VM": sorted(vm(r) for r in records("VM") if not (r["is_control_domain"] or r["is_default_template"])),
        "VM_appliance": sorted((r["uuid"], r["name_label"], len(r["VMs"])) for r in apps.values()),
        "SR": sorted(r["uuid"] for r in srs.values()),
        "VDI": sorted(vdi(r) for r in records("VDI")),
        "VBD": sorted(r["uuid"] for r in records("VBD")),
        "VIF": sorted(r["uuid"] for r in records("VIF")),
        "network": sorted(network(r) for r in records("network")),
        "PBD": sorted((srs[r["SR"]]["uuid"], r["currently_attached"]) for r in records("PBD")),
        "DR_task": s.xenapi.DR_task.get_all(),
        "metadata_VDIs": len(s.xenapi.pool.get_metadata_VDIs(pool)),
    }


def kill_in(s: XenAPI.Session, child: subprocess.Popen[bytes], ref: str, step: str, log: Path) -> dict[str, Any]:
    """SIGKILL the engine once ``step`` is under way; the journal as the kill left it."""
    ready = PROGRESS.get(step, lambda data: True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        entry = json.loads(s.xenapi.DR_run.get_steps(ref)).get(step, {})
        if (entry.get("state") == "started" and ready(entry["data"])) or entry.get("state") in ("done", "failed"):
            break  # done already: too late to catch it inside; the kill lands in a later step
        assert child.poll() is None, f"the engine ended before {step} was caught: {log.read_text()[-1500:]}"
        time.sleep(0.01)
    child.kill()
    assert child.wait() == -signal.SIGKILL, f"the engine ended by itself: {log.read_text()[-1500:]}"
    return dict(json.loads(s.xenapi.DR_run.get_steps(ref)))


def test_a_run_killed_at_every_step_and_resumed_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    """The engine is killed once at every step and resumed; the final state equals that of an uninterrupted run."""
    make_pool(tmp_path / "a", "Site A")
    # Every B below is a copy of this never-started pool: the same uuids, so states compare as they are.
    make_pool(tmp_path / "b-template", "Site B")
    pair(tmp_path / "a", tmp_path / "b-template")
    a = PoolServer(tmp_path / "a").start()
    try:
        _, tags = shop_site(a, tmp_path / "lun")
        subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "replica")], check=True)
    finally:
        a.stop()  # with its QEMUs

    def site_b(name: str) -> tuple[PoolServer, str]:
        """A fresh B (never started) and its own copy of the replica."""
        subprocess.run(["cp", "-a", str(tmp_path / "b-template"), str(tmp_path / f"b-{name}")], check=True)
        subprocess.run(["cp", "-a", str(tmp_path / "replica"), str(tmp_path / f"lun-{name}")], check=True)
        return PoolServer(tmp_path / f"b-{name}").start(), str(tmp_path / f"lun-{name}")

    # The uninterrupted run: what every interrupted one must end as.
    b, lun = site_b("reference")
    try:
        sb = b.session()
        ref = run(sb, "failover", {"luns": lun, "confirm_split": "true", "declare_site_down": "Site A"})
        assert sb.xenapi.DR_run.get_state(ref) == "done"
        expected = pool_state(sb)
        for uuid, tag in tags.items():
            wait_serial(b, sb, sb.xenapi.VM.get_by_uuid(uuid), f"BOOT {tag}".encode())
    finally:
        b.stop()
    assert {vm[0] for vm in expected["VM"]} == set(tags)
    assert all(version == 1 and power == "Running" for _, version, power, _ in expected["VM"])
    assert [(name, n) for _, name, n in expected["VM_appliance"]] == [("shop", 2)]
    assert expected["DR_task"] == [] and expected["metadata_VDIs"] == 1

    # Each kill gets a fresh B and its own copy of the replica, and every run powers on ("start"),
    # so each must end exactly as the reference did; the resume runs in the server (DR_run.resume).
    caught: dict[str, bool] = {}
    for step in STEPS:
        b, lun = site_b(step)
        try:
            sb = b.session()
            ref = sb.xenapi.DR_run.create(
                "failover", {"luns": lun, "confirm_split": "true", "declare_site_down": "Site A"}
            )
            log = tmp_path / f"engine-{step}.log"
            with open(log, "wb") as out:
                args = [sys.executable, "-c", CHILD, b.url, ADMIN_PASSWORD, ref, step, str(THROTTLE_S)]
                child = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
            journal = kill_in(sb, child, ref, step, log)
            caught[step] = journal.get(step, {}).get("state") == "started"
            # Resumed at once: a VM.start the dead engine had in flight may still be going on in
            # the server, and the resumed engine must wait for it rather than count it failed.
            time.sleep(SETTLE_S)
            sb.xenapi.DR_run.resume(ref)
            record = sb.xenapi.DR_run.get_record(ref)
            assert record["state"] == "done", (step, record["report"])
            assert all(json.loads(record["steps"])[name]["state"] == "done" for name in STEPS), step
            assert pool_state(sb) == expected, f"killed in {step}, resumed: {journal.get(step)}"
            assert "Failover (succeeded)" in record["report"]
        finally:
            b.stop()
    missed = [step for step, inside in caught.items() if not inside]
    print(f"killed inside: {[s for s in STEPS if caught[s]]}; only after the step was done: {missed}")
    assert caught["attach"] and caught["recover"] and caught["start"], caught
    assert not missed, f"these steps ended before the kill: {missed}"


def test_failback_after_the_luns_are_copied_back_replaces_the_stale_copies(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path
) -> None:
    """After copying B's LUNs back, a failback to A replaces A's stale copies (version rule)."""
    a, b = two_pools
    lun_a, lun_b = tmp_path / "lun", tmp_path / "copy"
    _, tags = shop_site(a, lun_a)
    subprocess.run(["cp", "-a", str(lun_a), str(lun_b)], check=True)
    a.stop()
    kill_qemus(a.data_dir / "run")

    # Failover: B runs the VMs from its copy and protects it with its own metadata.
    sb = b.session()
    ref = run(
        sb, "failover", {"luns": str(lun_b), "power": "start", "confirm_split": "true", "declare_site_down": "Site A"}
    )
    assert sb.xenapi.DR_run.get_state(ref) == "done"
    for uuid in tags:
        vm = sb.xenapi.VM.get_by_uuid(uuid)
        assert sb.xenapi.VM.get_power_state(vm) == "Running"
        assert int(sb.xenapi.VM.get_version(vm)) == 1
    pool_b = sb.xenapi.pool.get_all()[0]
    metadata_b = sb.xenapi.pool.get_metadata_VDIs(pool_b)
    assert len(metadata_b) == 1
    sr_uuid = sb.xenapi.SR.get_uuid(sb.xenapi.VDI.get_SR(metadata_b[0]))
    for uuid in tags:
        sb.xenapi.VM.hard_shutdown(sb.xenapi.VM.get_by_uuid(uuid))

    # B's LUN goes back over A's directory (A is down); B keeps its SR and its lease on its copy.
    subprocess.run(["cp", "-a", f"{lun_b}/.", f"{lun_a}/"], check=True)
    copied = lease.read(lun_a)
    assert copied is not None and copied.pool_uuid == sb.xenapi.pool.get_uuid(pool_b)
    assert copied.expiry > time.time()  # B's lease is live, but on B's directory, not on A's
    assert (copied.device, copied.inode) != (os.stat(lun_a).st_dev, os.stat(lun_a).st_ino)
    assert not copied.live_on(lun_a, time.time())
    a.start()
    restarted = time.monotonic()
    sa = a.session()
    # A still knows the SR, and its PBD stays plugged across the restart (currently_attached is
    # kept); the failback's attach step must see what came with the copy all the same.
    assert len(sa.xenapi.SR.get_PBDs(sa.xenapi.SR.get_by_uuid(sr_uuid))) == 1
    for uuid in tags:  # A's own copies: stale, never started
        vm = sa.xenapi.VM.get_by_uuid(uuid)
        assert (int(sa.xenapi.VM.get_version(vm)), sa.xenapi.VM.get_power_state(vm)) == (0, "Halted")

    # Failback on A: B's copies (version 1) replace A's stale ones (version 0), then boot.
    ref = run(sa, "failback", {"luns": str(lun_a), "confirm_split": "true", "declare_site_down": "Site B"})
    record = sa.xenapi.DR_run.get_record(ref)
    assert record["state"] == "done"
    assert "Failback (succeeded)" in record["report"], record["report"]
    assert "Site B" in record["report"]
    assert record["report"].count("an older halted copy here will be replaced") == len(tags)
    for uuid, tag in tags.items():
        vm = sa.xenapi.VM.get_by_uuid(uuid)
        assert int(sa.xenapi.VM.get_version(vm)) == 2
        assert sa.xenapi.VM.get_power_state(vm) == "Running"
        wait_serial(a, sa, vm, f"BOOT {tag}".encode())
    apps = sa.xenapi.VM_appliance.get_all_records()
    assert [(r["name_label"], len(r["VMs"])) for r in apps.values()] == [("shop", 2)]
    assert sa.xenapi.DR_task.get_all() == []
    # B's lease did not block A: by its next heartbeat at the latest, the lease on A's LUN is A's.
    pool_a = sa.xenapi.pool.get_uuid(sa.xenapi.pool.get_all()[0])
    while (held := lease.read(lun_a)) is None or held.pool_uuid != pool_a:
        assert time.monotonic() < restarted + Fencing().renew_interval_s + 5, f"A never took its LUN's lease: {held}"
        time.sleep(0.2)
    assert "taken over" not in (a.data_dir / "server.log").read_text()

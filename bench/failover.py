#!/usr/bin/env python3
"""Benchmark of the DR engine on two real ``farside server`` processes: site A's replica failed over to site B.

The issue's benchmark:

1. **A test failover of 1,000 VMs in 100 vApps** (``--vms``, ``--per-vapp``) from one metadata
   VDI, with power option "do not start", cleanup included, run two ways on the same data:

   - **in-process**, as the console runs it: ``DR_run.create`` then ``DR_run.start`` on site B,
     so the engine runs inside B's server and makes its XenAPI calls in-process; then
     ``DR_run.cleanup``.
   - **over XML-RPC**, as the CLI runs it: the engine runs in this process on a
     ``farside.dr.session.XmlRpcSession`` to B (``Engine(session, run).run()`` and ``.cleanup()``).
     Its calls are counted per step and message (a thin wrapper around the session), which shows
     where the round trips go; the in-process run makes the same calls. A run still going after
     ``--budget`` seconds (300) is cut short between two calls, and the step it was in is
     projected from the share of the VMs it had reached (cleanup is then skipped: that site B is
     thrown away).

   Site A is built once: a pool as ``farside init`` makes it; its server makes a file SR on a
   LUN directory (``SR.create``) and is stopped; then every VM's disk is written straight onto
   the LUN (a sparse raw image and its record, ``farside.storage.lun.Lun.write_vdi``), and the
   vApps, VMs (full records, ``bench/bigpool.py``'s ``vm_record``, halted), their VDI, VBD, VIF and
   VM_metrics rows straight into A's database in one transaction; A's server starts again,
   ``SR.scan`` and ``SR.enable_database_replication`` put a full copy of A's metadata into a
   metadata VDI on the LUN, and A is stopped. Each run works on its own ``cp -a`` of the LUN and
   on a fresh site B (a new pool and server), so one run leaves nothing to the next.

2. **A failover that starts 20 real VMs** (``--boot-count``): site A holds 20 bootable VMs of
   16 MiB (``tests/vms.bootable_vm``), standalone, order 0, ``start_delay`` 0, each with the
   engine's readiness key (``other_config["farside-ready-serial"] = "BOOT <tag>"``) so the start
   step lasts until every guest has printed its boot line, as the floor does; A's metadata
   replicates to the SR; A boots them once (a warm-up, through the API) and is stopped; B runs
   ``DR_run`` kind failover, power start, ``confirm_split=true`` on a copy of the LUN. Its
   journal's start step is compared with the floor of ``bench/vm_boot.py`` measured in the
   same repetition, right after it: the same 20 QEMU command lines (``vm_boot.floor_specs`` from
   the ``spec.json`` B's driver wrote, checked against the live QEMUs' ``/proc`` command lines),
   launched at once with ``subprocess.Popen`` and let run with the least QMP (capabilities,
   cont), until every boot line is in its serial log. As a reference, the same 20 VMs are then
   started on B with plain ``VM.start`` calls through the API (``vm_boot.farside_run``).
   ``--reps`` repetitions (default 3, 1 with ``--quick``), each on a fresh site B and copy.

Reported per run, from the run's journal (``DR_run.steps``, each step's ``seconds``): discover
(discover + attach + choose + load + select), precheck, recover, start, the remaining steps
(protect + release + report); the wall time of the whole run and of cleanup (the journal keeps
no seconds for cleanup); and the CPU seconds B's server process and this process spent (the
machine has 2 CPUs, so other load shows in the wall times before it shows in these). Targets:
the 1,000-VM test failover, run and cleanup, within 10 s in-process; the start step of the 20
VMs within 1.5x the floor.

Usage: ``.venv/bin/python bench/failover.py [--quick] [--vms N] [--per-vapp N] [--boot-count N]
[--reps N] [--budget S] [--skip-xmlrpc] [--skip-boot]``. Every server is stopped (``PoolServer.stop``, which
also kills its QEMUs by pid file), every floor QEMU killed by pid, and every temporary directory
removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import XenAPI

import farside
from farside.db import Database
from farside.dr.probes import SERIAL_KEY
from farside.dr.runner import Engine
from farside.dr.session import XmlRpcSession
from farside.model.types import NULL_REF
from farside.storage.lun import Lun

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import bigpool
import vm_boot
from bigpool import server_cpu_s
from vm_boot import fmt_s

from pools import ADMIN_PASSWORD, PoolServer, kill_qemus, make_pool, pair
from vms import bootable_vm, make_sr

GIB = 1024**3
MIB = 1024**2
DEFAULT_VMS = 1_000
DEFAULT_PER_VAPP = 10
DEFAULT_BOOT_COUNT = 20
# The XML-RPC run is cut short after this long (its projection is reported instead).
DEFAULT_XMLRPC_BUDGET_S = 300.0
DISK_BYTES = GIB  # each VM's disk: a sparse raw image of this virtual size
BOOT_MEMORY_MIB = 16
# Targets from the issue.
TEST_FAILOVER_TARGET_S = 10.0
START_TARGET_RATIO = 1.5
# Quiet time after a run's VMs are gone, before the next run starts (as bench/vm_boot.py).
SETTLE_S = vm_boot.SETTLE_S
# The steps that make up "discover" in the tables, and the ones after start.
DISCOVER_STEPS = ("discover", "attach", "choose", "load", "select")
AFTER_START_STEPS = ("protect", "release", "report")


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Mark:
    """A moment: the wall clock and the CPU seconds of B's server and of this process."""

    wall: float
    server_cpu: float
    bench_cpu: float

    @classmethod
    def now(cls, server: PoolServer) -> Mark:
        assert server.process is not None
        return cls(time.perf_counter(), server_cpu_s(server.process.pid), vm_boot.own_cpu_s())


@dataclass
class Span:
    """What happened between two marks."""

    wall_s: float
    server_cpu_s: float
    bench_cpu_s: float

    @classmethod
    def between(cls, before: Mark, after: Mark) -> Span:
        return cls(after.wall - before.wall, after.server_cpu - before.server_cpu, after.bench_cpu - before.bench_cpu)


@dataclass
class CallStat:
    calls: int = 0
    seconds: float = 0.0
    failures: int = 0


class BudgetExceeded(Exception):
    """The run took longer than the benchmark allows it; raised from the session, between calls."""


class CountingSession:
    """A ``Session`` that counts and times every XenAPI call, by the engine step it was made in;
    once past ``deadline`` (``time.perf_counter``), the next call raises BudgetExceeded."""

    def __init__(self, inner: XmlRpcSession) -> None:
        self.inner = inner
        self.engine: Engine | None = None
        self.deadline: float | None = None
        self.stats: dict[tuple[str, str], CallStat] = defaultdict(CallStat)

    @property
    def handle(self) -> str:
        return self.inner.handle

    def _step(self) -> str:
        if self.engine is None:
            return "(set-up)"
        for name, entry in self.engine.journal.items():
            if entry.get("state") == "started":
                return name
        return "(between steps)"

    def call(self, method: str, *args: Any) -> Any:
        return self.call_as(self.inner.handle, method, *args)

    def call_as(self, session: str, method: str, *args: Any) -> Any:
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise BudgetExceeded(method)
        stat = self.stats[(self._step(), method)]
        began = time.perf_counter()
        try:
            return self.inner.call_as(session, method, *args)
        except Exception:
            stat.failures += 1
            raise
        finally:
            stat.calls += 1
            stat.seconds += time.perf_counter() - began

    def serial(self, vm_uuid: str) -> bytes:
        return self.inner.serial(vm_uuid)


@dataclass
class FailoverResult:
    """One DR run: its journal's step times, and the wall and CPU time of the run and its cleanup."""

    title: str
    steps: dict[str, float]  # step -> the journal's seconds
    run: Span
    cleanup: Span | None
    vms: int  # VMs the run recovered
    vapps: int
    journal: dict[str, Any]
    calls: dict[tuple[str, str], CallStat] | None = None
    aborted: str = ""  # the step the budget cut short, and what it had done
    round_trip_s: float | None = None  # one small XML-RPC call before the run

    def step(self, name: str) -> float:
        return self.steps.get(name, math.nan)

    @property
    def discover_s(self) -> float:
        return sum(self.step(s) for s in DISCOVER_STEPS)

    @property
    def after_start_s(self) -> float:
        return sum(self.step(s) for s in AFTER_START_STEPS)


def _guest(record: dict[str, Any]) -> bool:
    """A VM of the benchmark's own: not a control domain, not one of a new pool's default templates."""
    return not (record["is_control_domain"] or record["is_a_template"])


def journal_seconds(journal: dict[str, Any]) -> dict[str, float]:
    return {name: float(entry["seconds"]) for name, entry in journal.items() if "seconds" in entry}


# -- site A: 1,000 VMs in 100 vApps, written straight into the LUN and the database ------------


@dataclass(frozen=True)
class Disk:
    uuid: str
    location: str


def write_disks(lun: Path, count: int) -> list[Disk]:
    """``count`` sparse raw images on the LUN, each with its VDI record (as VDI.create leaves them)."""
    store = Lun(lun)
    disks = []
    for i in range(count):
        vdi_uuid = str(uuid.uuid4())
        disk = Disk(vdi_uuid, f"{vdi_uuid}.raw")
        with open(store.image_path(disk.location), "wb") as f:
            f.truncate(DISK_BYTES)
        store.write_vdi(
            {
                "uuid": vdi_uuid,
                "name_label": f"vm-{i:05d} system disk",
                "name_description": "Created by the template installer",
                "type": "system",
                "virtual_size": DISK_BYTES,
                "location": disk.location,
                "sharable": False,
                "read_only": False,
                "sm_config": {"type": "raw"},
                "metadata_of_pool": "",
                "is_a_snapshot": False,
                "snapshot_of": "",
                "snapshot_time": "19700101T00:00:00Z",
            }
        )
        disks.append(disk)
    return disks


def write_vms(db_path: Path, sr_uuid: str, disks: list[Disk], per_vapp: int) -> None:
    """The vApps and VMs (full records, halted), with their disks' VDI rows, VBDs, VIFs and
    VM_metrics, in one transaction; the server is stopped meanwhile."""
    db = Database.open(db_path)
    try:
        with db.write() as tx:
            host = tx.refs("host")[0]
            network = tx.refs("network")[0]
            sr = tx.find("SR", "uuid", sr_uuid)[0]
            apps = [
                tx.create("VM_appliance", {"name_label": f"app-{a:03d}", "name_description": "tier"})
                for a in range((len(disks) + per_vapp - 1) // per_vapp)
            ]
            for i, disk in enumerate(disks):
                vdi = tx.create(
                    "VDI",
                    {
                        "uuid": disk.uuid,
                        "name_label": f"vm-{i:05d} system disk",
                        "name_description": "Created by the template installer",
                        "SR": sr,
                        "virtual_size": DISK_BYTES,
                        "type": "system",
                        "location": disk.location,
                        "managed": True,
                        "sharable": False,
                        "read_only": False,
                        "sm_config": {"type": "raw"},
                    },
                )
                record = bigpool.vm_record(i, host, sr, apps[i // per_vapp], NULL_REF, NULL_REF, NULL_REF)
                memory = record["memory_static_max"]
                metrics = tx.create("VM_metrics", {"memory_actual": memory, "VCPUs_number": 2, "hvm": True})
                # Halted: a DR site's copy of a VM is recovered halted, and suspended VMs would need
                # suspend images too.
                record.update(power_state="Halted", metrics=metrics, suspend_VDI=NULL_REF)
                vm = tx.create("VM", record)
                tx.create(
                    "VBD",
                    {"VM": vm, "VDI": vdi, "device": "xvda", "userdevice": "0", "bootable": True, "mode": "RW",
                     "type": "Disk", "unpluggable": False, "other_config": {"owner": "true"}},
                )  # fmt: skip
                tx.create(
                    "VIF",
                    {"device": "0", "network": network, "VM": vm, "MTU": 1500, "other_config": {},
                     "MAC": f"02:16:3e:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}"},
                )  # fmt: skip
    finally:
        db.close()


def build_big_site(root: Path, vms: int, per_vapp: int) -> Path:
    """Site A with ``vms`` VMs in vApps of ``per_vapp`` and its metadata on its LUN; returns the LUN."""
    data, lun = root / "site-a", root / "lun-a"
    make_pool(data, "Site A")
    server = PoolServer(data).start()
    try:
        s = server.session()
        sr_uuid = str(s.xenapi.SR.get_uuid(make_sr(s, lun, "Replicated LUN")))
        s.xenapi.session.logout()
    finally:
        server.stop()
    began = time.perf_counter()
    disks = write_disks(lun, vms)
    written = time.perf_counter()
    write_vms(data / "pool.db", sr_uuid, disks, per_vapp)
    print(
        f"site A: {vms:,} disks on the LUN in {written - began:.1f} s, "
        f"{vms:,} VMs in the database in {time.perf_counter() - written:.1f} s",
        flush=True,
    )
    server = PoolServer(data).start()
    try:
        s = server.session()
        sr = s.xenapi.SR.get_by_uuid(sr_uuid)
        s.xenapi.SR.scan(sr)
        began = time.perf_counter()
        s.xenapi.SR.enable_database_replication(sr)
        enabled = time.perf_counter() - began
        guests = [
            r for r in s.xenapi.VM.get_all_records().values() if not (r["is_control_domain"] or r["is_a_template"])
        ]
        vdis = [r for r in s.xenapi.VDI.get_all_records().values() if r["SR"] == sr and r["type"] != "metadata"]
        if len(guests) != vms or len(vdis) != vms:
            raise RuntimeError(f"site A holds {len(guests)} VMs and {len(vdis)} disks, expected {vms}")
        s.xenapi.session.logout()
    finally:
        server.stop()
    print(f"site A: SR scanned; full metadata copy written (enable_database_replication) in {enabled:.1f} s")
    return lun


def copy_lun(lun: Path, target: Path) -> Path:
    """The array's mirror, split: a ``cp -a`` of the LUN (sparse images stay sparse)."""
    subprocess.run(["cp", "-a", str(lun), str(target)], check=True)
    return target


def fresh_site_b(root: Path, name: str, site_a: Path) -> PoolServer:
    """A new site B, paired with site A (each trusts the other's DR key) as DR needs."""
    make_pool(root / name, "Site B")
    pair(site_a, root / name)
    return PoolServer(root / name).start()


def forget_site(server: PoolServer) -> None:
    server.stop()
    shutil.rmtree(server.data_dir, ignore_errors=True)


# -- the test failover, in-process and over XML-RPC --------------------------------------------


def _counts(journal: dict[str, Any]) -> tuple[int, int]:
    load, chosen = journal["load"]["data"], journal["select"]["data"]
    vms = len(chosen["vms"]) + sum(len(load["vapps"][u]["members"]) for u in chosen["vapps"])
    return vms, len(chosen["vapps"])


def test_run_in_process(b: PoolServer, lun: Path) -> FailoverResult:
    """DR_run.start and DR_run.cleanup: the engine runs in B's server."""
    s = b.session()
    try:
        ref = s.xenapi.DR_run.create("test", {"luns": str(lun), "power": "none"})
        before = Mark.now(b)
        s.xenapi.DR_run.start(ref)
        ran = Mark.now(b)
        journal: dict[str, Any] = json.loads(s.xenapi.DR_run.get_steps(ref))
        vms, vapps = _counts(journal)
        recovered = len(
            [r for r in s.xenapi.VM.get_all_records().values() if not (r["is_control_domain"] or r["is_a_template"])]
        )
        if recovered != vms:
            raise RuntimeError(f"the run recovered {recovered} VMs, its journal says {vms}")
        cleaning = Mark.now(b)
        s.xenapi.DR_run.cleanup(ref)
        cleaned = Mark.now(b)
        if s.xenapi.DR_run.get_state(ref) != "cleaned up":
            raise RuntimeError(f"cleanup left the run {s.xenapi.DR_run.get_state(ref)}")
        return FailoverResult(
            "in-process (DR_run.start in B's server, as the console runs it)",
            journal_seconds(journal),
            Span.between(before, ran),
            Span.between(cleaning, cleaned),
            vms,
            vapps,
            journal,
        )
    finally:
        s.xenapi.session.logout()


def round_trip_s(session: XmlRpcSession, calls: int = 20) -> float:
    """The median time of one small XML-RPC call (pool.get_uuid) on the session's connection."""
    pool = session.call("pool.get_all")[0]
    times = []
    for _ in range(calls):
        began = time.perf_counter()
        session.call("pool.get_uuid", pool)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def _projection(session: CountingSession, journal: dict[str, Any], step: str, elapsed_s: float) -> str:
    """For a step cut short by the budget: its whole time, from the share of the selected VMs it
    had reached (each VM's pass in precheck and recover begins with VM.get_by_uuid)."""
    if "select" not in journal or step not in ("precheck", "recover"):
        return ""
    vms, _ = _counts(journal)
    reached = session.stats[(step, "VM.get_by_uuid")].calls
    if not reached:
        return f"no VM reached in {fmt_s(elapsed_s)}"
    return (
        f"{reached:,} of {vms:,} VMs reached in {fmt_s(elapsed_s)}: "
        f"whole step projected at about {fmt_s(elapsed_s * vms / reached)}"
    )


def test_run_xmlrpc(b: PoolServer, lun: Path, budget_s: float) -> FailoverResult:
    """The engine in this process, on an XmlRpcSession to B, as the CLI runs it; a run still going
    after ``budget_s`` is cut short (and not cleaned up: site B is thrown away)."""
    session = CountingSession(XmlRpcSession(b.url, "root", ADMIN_PASSWORD))
    try:
        rtt = round_trip_s(session.inner)
        run = session.call("DR_run.create", "test", {"luns": str(lun), "power": "none"})
        engine = Engine(session, run)
        session.engine = engine
        before = Mark.now(b)
        session.deadline = before.wall + budget_s
        aborted = ""
        try:
            engine.run()
        except BudgetExceeded:
            step = session._step()
            elapsed = time.time() - float(engine.journal.get(step, {}).get("clock", time.time()))
            aborted = f"{step}, after {budget_s:g} s; " + _projection(session, engine.journal, step, elapsed)
        session.deadline = None
        ran = Mark.now(b)
        cleanup = None
        vms, vapps = _counts(engine.journal) if "select" in engine.journal else (0, 0)
        if not aborted:
            cleaning = Mark.now(b)
            engine.cleanup()
            cleanup = Span.between(cleaning, Mark.now(b))
            state = session.call("DR_run.get_state", run)
            if state != "cleaned up":
                raise RuntimeError(f"cleanup left the run {state}")
        return FailoverResult(
            "over XML-RPC (Engine in this process on an XmlRpcSession, as the CLI runs it)",
            journal_seconds(engine.journal),
            Span.between(before, ran),
            cleanup,
            vms,
            vapps,
            engine.journal,
            dict(session.stats),
            aborted,
            rtt,
        )
    finally:
        with contextlib.suppress(Exception):
            session.inner.logout()


# -- the failover that boots 20 VMs ----------------------------------------------------------


@dataclass
class BootRep:
    """One repetition: the failover's start step, the floor and plain VM.start, on the same VMs."""

    failover: FailoverResult
    started_s: list[float]  # per VM, from the journal: VM.start returned
    ready_s: list[float]  # per VM, from the journal: its boot line seen by the engine
    floor: vm_boot.Run
    api: vm_boot.Run


def build_boot_site(root: Path, count: int) -> tuple[Path, list[str]]:
    """Site A with ``count`` bootable VMs on a replicated SR, booted once (warm-up); returns the
    LUN and the tags, A stopped."""
    data, lun = root / "site-a-boot", root / "lun-boot"
    make_pool(data, "Site A")
    server = PoolServer(data).start()
    sessions: list[XenAPI.Session] = []
    try:
        s = server.session()
        sr = make_sr(s, lun, "Replicated LUN")
        guests = []
        for i in range(count):
            tag = f"fo-{i:03d}"
            vm = bootable_vm(server, s, sr, tag, memory_mib=BOOT_MEMORY_MIB)
            s.xenapi.VM.set_start_delay(vm, 0)
            s.xenapi.VM.set_order(vm, 0)
            s.xenapi.VM.add_to_other_config(vm, SERIAL_KEY, f"BOOT {tag}")
            guests.append(vm_boot.Guest(vm, str(s.xenapi.VM.get_uuid(vm)), tag))
        s.xenapi.SR.enable_database_replication(sr)
        sessions = [server.session() for _ in guests]
        warm = vm_boot.farside_run(server, sessions, guests, 0)
        print(f"site A: {count} bootable VMs; warm-up boot through the API: every tag in {warm.all_tags_s:.2f} s")
        s.xenapi.session.logout()
        return lun, [g.tag for g in guests]
    finally:
        for x in sessions:
            with contextlib.suppress(Exception):
                x.xenapi.session.logout()
        server.stop()


def boot_rep(root: Path, lun: Path, tags: list[str], floor_root: Path, rep: int) -> BootRep:
    """A fresh site B fails over a fresh copy of the LUN, starting the VMs; then the floor and
    plain VM.start on the same VMs."""
    copy = copy_lun(lun, root / f"lun-boot-copy-{rep}")
    b = fresh_site_b(root, f"site-b-boot-{rep}", root / "site-a-boot")
    sessions: list[XenAPI.Session] = []
    try:
        s = b.session()
        sessions.append(s)
        # Site A is gone (a copy of its LUN is all there is): the operator declares it down.
        options = {"luns": str(copy), "power": "start", "confirm_split": "true", "declare_site_down": "Site A"}
        ref = s.xenapi.DR_run.create("failover", options)
        before = Mark.now(b)
        s.xenapi.DR_run.start(ref)
        ran = Mark.now(b)
        journal: dict[str, Any] = json.loads(s.xenapi.DR_run.get_steps(ref))
        vms, vapps = _counts(journal)
        failover = FailoverResult(
            "failover, power start (DR_run.start in B's server)",
            journal_seconds(journal),
            Span.between(before, ran),
            None,
            vms,
            vapps,
            journal,
        )
        outcomes = journal["start"]["data"]["vms"]
        if len(outcomes) != len(tags) or any(o.get("state") != "started" or "ready_seconds" not in o
                                             for o in outcomes.values()):  # fmt: skip
            raise RuntimeError(f"not every VM started and became ready: {outcomes}")
        by_tag = {}
        for ref_b, record in s.xenapi.VM.get_all_records().items():
            if _guest(record):
                by_tag[record["name_label"]] = vm_boot.Guest(ref_b, record["uuid"], record["name_label"])
        guests = [by_tag[t] for t in tags]
        specs = vm_boot.floor_specs(b, guests)
        vm_boot.check_same_argv(b, guests, specs, floor_root)  # while the failover's QEMUs run
        sessions += [b.session() for _ in guests[1:]]
        vm_boot.hard_shutdown_all(b, sessions, guests)
        time.sleep(SETTLE_S)
        assert b.process is not None
        floor = vm_boot.floor_run(specs, floor_root, guests, vm_boot.FLOOR, rep, b.process.pid)
        time.sleep(SETTLE_S)
        api = vm_boot.farside_run(b, sessions, guests, rep)
        time.sleep(SETTLE_S)
        return BootRep(
            failover,
            [float(o["seconds"]) for o in outcomes.values()],
            [float(o["ready_seconds"]) for o in outcomes.values()],
            floor,
            api,
        )
    finally:
        for x in sessions:
            with contextlib.suppress(Exception):
                x.xenapi.session.logout()
        kill_qemus(floor_root)
        forget_site(b)
        shutil.rmtree(copy, ignore_errors=True)


# -- the report -------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_failover(result: FailoverResult, target_s: float | None) -> None:
    width = 58

    def row(label: str, value: str, note: str = "") -> None:
        print(f"  {label:<{width}} {value:>10}  {note}".rstrip())

    print()
    print(f"{result.title}: {result.vms:,} VMs in {result.vapps} vApps")
    if result.round_trip_s is not None:
        row("one small XML-RPC call (pool.get_uuid), median of 20", fmt_s(result.round_trip_s))
    if result.aborted:
        print(f"  CUT SHORT in {result.aborted}")
    row("discover (discover + attach + choose + load + select)", fmt_s(result.discover_s))
    for name in DISCOVER_STEPS:
        row(f"  {name}", fmt_s(result.step(name)))
    row("precheck", fmt_s(result.step("precheck")))
    row("recover", fmt_s(result.step("recover")))
    start = result.journal.get("start", {}).get("data", {})
    row("start", fmt_s(result.step("start")), f"({start['skipped']})" if "skipped" in start else "")
    row("protect + release + report", fmt_s(result.after_start_s))
    steps_total = sum(result.steps.values())
    row("sum of the journal's steps", fmt_s(steps_total))
    row("run, wall (journal writes between steps included)", fmt_s(result.run.wall_s))
    if result.cleanup is not None:
        row("cleanup, wall", fmt_s(result.cleanup.wall_s))
    row("CPU of B's server process: run", fmt_s(result.run.server_cpu_s))
    if result.cleanup is not None:
        row("CPU of B's server process: cleanup", fmt_s(result.cleanup.server_cpu_s))
    row("CPU of this process: run + cleanup",
        fmt_s(result.run.bench_cpu_s + (result.cleanup.bench_cpu_s if result.cleanup else 0.0)))  # fmt: skip
    if result.cleanup is not None:
        total = result.run.wall_s + result.cleanup.wall_s
        note = f"target {fmt_s(target_s)}  [{verdict(total <= target_s)}]" if target_s is not None else "(no target)"
        row("TOTAL: run + cleanup, wall", fmt_s(total), note)


def print_calls(stats: dict[tuple[str, str], CallStat], top: int) -> None:
    by_step: dict[str, CallStat] = defaultdict(CallStat)
    for (step, _), stat in stats.items():
        by_step[step].calls += stat.calls
        by_step[step].seconds += stat.seconds
    total = sum(s.calls for s in stats.values())
    print()
    print(f"XenAPI calls the engine made over XML-RPC: {total:,} (the in-process run makes the same calls)")
    print(f"  {'step':<18} {'calls':>9} {'seconds':>10}")
    for step, stat in sorted(by_step.items(), key=lambda kv: -kv[1].seconds):
        print(f"  {step:<18} {stat.calls:>9,} {stat.seconds:>10.2f}")
    print(f"  top {top} (step, message) by time:")
    print(f"  {'step':<18} {'message':<40} {'calls':>9} {'failed':>7} {'seconds':>9} {'per call':>10}")
    ranked = sorted(stats.items(), key=lambda kv: -kv[1].seconds)[:top]
    for (step, method), stat in ranked:
        per = stat.seconds / stat.calls if stat.calls else math.nan
        print(
            f"  {step:<18} {method:<40} {stat.calls:>9,} {stat.failures:>7,} {stat.seconds:>9.2f} {per * 1e3:>7.2f} ms"
        )


def print_boot(reps: list[BootRep], count: int) -> None:
    width = 62

    def row(label: str, values: list[float]) -> None:
        cells = [statistics.median(values), min(values), max(values)]
        print(f"  {label:<{width}}" + "".join(f"{fmt_s(c):>10}" for c in cells))

    first = reps[0].failover
    print()
    print(
        f"Failover of {count} bootable VMs of {BOOT_MEMORY_MIB} MiB, power start, start_delay 0, "
        f"{len(reps)} repetition(s), each on a fresh site B"
    )
    print(f"  {'':<{width}}{'median':>10}{'min':>10}{'max':>10}")
    row("discover (discover + attach + choose + load + select)", [r.failover.discover_s for r in reps])
    row("precheck", [r.failover.step("precheck") for r in reps])
    row("recover", [r.failover.step("recover") for r in reps])
    row("start (journal: until every VM's boot line was seen)", [r.failover.step("start") for r in reps])
    row("  of which: every VM.start returned", [max(r.started_s) for r in reps])
    row("  of which: every VM ready (boot line seen; polled every 20 ms)", [max(r.ready_s) for r in reps])
    row("protect + release + report", [r.failover.after_start_s for r in reps])
    row("run, wall", [r.failover.run.wall_s for r in reps])
    row("CPU of B's server process during the run", [r.failover.run.server_cpu_s for r in reps])
    row("floor (vm_boot): same argv, Popen x N at once, every tag", [r.floor.all_tags_s for r in reps])
    row("reference: VM.start x N through the API (vm_boot), every tag", [r.api.all_tags_s for r in reps])
    print(f"  (the first run recovered {first.vms} VMs)")
    start = [r.failover.step("start") for r in reps]
    floor = [r.floor.all_tags_s for r in reps]
    ratio = statistics.median(start) / statistics.median(floor)
    paired = [s / f for s, f in zip(start, floor, strict=True)]
    print(f"Ratio start step / floor (target: at most {START_TARGET_RATIO:g}x)")
    print(
        f"  median / median {ratio:5.2f}x   min / min {min(start) / min(floor):5.2f}x   "
        f"per repetition {'  '.join(f'{p:.2f}x' for p in paired)}   [{verdict(ratio <= START_TARGET_RATIO)}]"
    )
    api = statistics.median([r.api.all_tags_s for r in reps]) / statistics.median(floor)
    print(f"  reference: plain VM.start x N through the API / floor, median / median {api:.2f}x")


# -- main -------------------------------------------------------------------------------------


def load_average() -> str:
    """The machine's load average: timings on a busy machine say more about it than about us."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def revision() -> str:
    """The commit the benchmark runs on, and whether the work tree differs from it."""
    top = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(top), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(top), "status", "--porcelain", "--", "src"], capture_output=True,
                               text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"commit {head}{' with uncommitted changes in src/' if dirty else ''}"


@contextlib.contextmanager
def temporary_dirs() -> Iterator[tuple[Path, Path]]:
    root = Path(tempfile.mkdtemp(prefix="farside-failover-"))
    floor_root = Path(tempfile.mkdtemp(prefix="fsfloor-", dir="/tmp"))  # short: socket paths
    try:
        yield root, floor_root
    finally:
        killed = kill_qemus(floor_root)
        if killed:
            print(f"killed {len(killed)} leftover floor QEMU(s): {killed}")
        shutil.rmtree(floor_root, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one boot repetition instead of three")
    parser.add_argument("--vms", type=int, default=DEFAULT_VMS, help="VMs of the test failover (default 1000)")
    parser.add_argument("--per-vapp", type=int, default=DEFAULT_PER_VAPP, help="VMs per vApp (default 10)")
    parser.add_argument("--boot-count", type=int, default=DEFAULT_BOOT_COUNT, help="VMs to boot (default 20)")
    parser.add_argument("--reps", type=int, default=None, help="boot repetitions (default 3, 1 with --quick)")
    parser.add_argument("--skip-xmlrpc", action="store_true", help="no test failover over XML-RPC")
    parser.add_argument("--skip-boot", action="store_true", help="no failover that boots VMs")
    parser.add_argument(
        "--budget", type=float, default=DEFAULT_XMLRPC_BUDGET_S,
        help=f"seconds after which the XML-RPC run is cut short (default {DEFAULT_XMLRPC_BUDGET_S:g})",
    )  # fmt: skip
    args = parser.parse_args()
    reps: int = args.reps if args.reps is not None else 1 if args.quick else 3
    if args.vms < 1 or args.per_vapp < 1 or args.boot_count < 1 or reps < 1:
        parser.error("--vms, --per-vapp, --boot-count and --reps must be at least 1")

    print(
        f"farside bench/failover.py: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"test failover of {args.vms:,} VMs in vApps of {args.per_vapp}, "
        f"failover booting {args.boot_count} VMs x {reps} repetition(s), {load_average()}",
        flush=True,
    )
    print(f"farside from {Path(farside.__file__).parent}, {revision()}")
    vm_boot.report_host_load("before")
    results: list[tuple[FailoverResult, float | None]] = []
    boots: list[BootRep] = []
    with temporary_dirs() as (root, floor_root):
        began = time.perf_counter()
        lun = build_big_site(root, args.vms, args.per_vapp)
        print(f"site A built in {time.perf_counter() - began:.1f} s", flush=True)
        target = TEST_FAILOVER_TARGET_S if args.vms == DEFAULT_VMS else None
        names = ["in-process"] if args.skip_xmlrpc else ["in-process", "xmlrpc"]
        for name in names:
            copy = copy_lun(lun, root / f"lun-{name}")
            b = fresh_site_b(root, f"site-b-{name}", root / "site-a")
            try:
                in_process = name == "in-process"
                result = test_run_in_process(b, copy) if in_process else test_run_xmlrpc(b, copy, args.budget)
            finally:
                forget_site(b)
                shutil.rmtree(copy, ignore_errors=True)
            results.append((result, target if name == "in-process" else None))
            print_failover(result, target if name == "in-process" else None)
            if result.calls is not None:
                print_calls(result.calls, 15)
            sys.stdout.flush()
        shutil.rmtree(lun, ignore_errors=True)
        if not args.skip_boot:
            boot_lun, tags = build_boot_site(root, args.boot_count)
            for rep in range(1, reps + 1):
                boots.append(boot_rep(root, boot_lun, tags, floor_root, rep))
                r = boots[-1]
                print(
                    f"  rep {rep}: start step {fmt_s(r.failover.step('start'))}, floor {fmt_s(r.floor.all_tags_s)}, "
                    f"VM.start through the API {fmt_s(r.api.all_tags_s)}",
                    flush=True,
                )

    print()
    print("=" * 100)
    print("Summary")
    for result, target_s in results:
        print_failover(result, target_s)
    if boots:
        print_boot(boots, args.boot_count)
    vm_boot.report_host_load("after")
    return 0


if __name__ == "__main__":
    sys.exit(main())

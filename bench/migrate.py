#!/usr/bin/env python3
"""Benchmark of live migration into a new QEMU process (xapi's localhost migration).

A guest that counts in its memory and writes the count to its disk at every tick (the test disk
of ``farside.storage.bootable``) is migrated ``--reps`` times, for each memory size:

- **driver**: ``QemuDriver.migrate`` directly, reporting QEMU's downtime plus the switch (the
  time the guest's vCPUs are stopped) and the whole migration's time;
- **baseline**: suspend and resume of the same guest (``suspend`` then ``start(restore_from=)``),
  the other way to move a guest into a new process, during which the guest is stopped throughout;
- **API**: ``VM.pool_migrate`` through a real ``farside server`` (16 MiB only), the call's time.

Targets: a 16 MiB guest's downtime under 50 ms, and every size's downtime at most half the
suspend-and-resume time. Each line is printed with [PASS] or [MISS] as the other benchmarks do.
Usage: ``.venv/bin/python bench/migrate.py [--quick] [--reps N]``; ``--quick`` does 3 repetitions
and the 16 MiB size only. Every QEMU is stopped and every temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

from farside.hypervisor.driver import DiskSpec, VMSpec
from farside.hypervisor.qemu import QemuDriver
from farside.storage.bootable import read_counter, write_bootable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pools import PoolServer, make_pool
from vms import bootable_vm, make_sr, wait_serial

MIB = 1 << 20
DOWNTIME_TARGET_S = 0.050
BASELINE_FRACTION = 0.5


def wait_ticks(driver: QemuDriver, uuid: str, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while driver.read_serial(uuid).count(b"TICK ") < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the guest printed fewer than {count} ticks in {timeout} s")
        time.sleep(0.02)


def driver_run(root: Path, memory_mib: int, reps: int) -> tuple[list[float], list[float], list[float]]:
    """Downtimes and totals of ``reps`` migrations, and ``reps`` suspend-and-resume times."""
    image = root / f"disk-{memory_mib}.img"
    write_bootable(image, f"bench{memory_mib}", counter=True)
    disk = DiskSpec(str(uuidlib.uuid4()), image, "raw", read_only=False, userdevice=0, bootable=True)
    spec = VMSpec(str(uuidlib.uuid4()), f"bench {memory_mib}", memory_mib * MIB, 1, [disk])
    downtimes, totals, baseline = [], [], []
    with QemuDriver(root / "run") as driver:
        driver.start(spec)
        try:
            wait_ticks(driver, spec.uuid, 2)
            for _ in range(reps):
                report = driver.migrate(spec.uuid)
                downtimes.append(report.downtime_s)
                totals.append(report.total_s)
                wait_ticks(driver, spec.uuid, driver.read_serial(spec.uuid).count(b"TICK ") + 1)
            assert (read_counter(image) or 0) > 0
            state = root / f"state-{memory_mib}"
            for _ in range(reps):
                began = time.monotonic()
                driver.suspend(spec.uuid, state)
                driver.start(spec, restore_from=state)
                baseline.append(time.monotonic() - began)
                state.unlink()
        finally:
            driver.hard_stop(spec.uuid)
    return downtimes, totals, baseline


def api_run(root: Path, reps: int) -> list[float]:
    make_pool(root / "pool", lun_roots=[str(root.resolve())])
    server = PoolServer(root / "pool").start()
    try:
        s = server.session()
        sr = make_sr(s, root / "lun")
        vm = bootable_vm(server, s, sr, "benchapi", counter=True)
        host = s.xenapi.host.get_all()[0]
        s.xenapi.VM.start(vm, False, False)
        wait_serial(server, s, vm, b"TICK 2")
        times = []
        for _ in range(reps):
            began = time.monotonic()
            s.xenapi.VM.pool_migrate(vm, host, {"live": "true"})
            times.append(time.monotonic() - began)
        s.xenapi.VM.hard_shutdown(vm)
        return times
    finally:
        server.stop()


def verdict(ok: bool) -> str:
    return "[PASS]" if ok else "[MISS]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="3 repetitions, 16 MiB only")
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args()
    reps = 3 if args.quick else args.reps
    sizes = [16] if args.quick else [16, 256]
    root = Path(tempfile.mkdtemp(prefix="fsmig-", dir="/tmp"))
    failed = False
    try:
        for size in sizes:
            downtimes, totals, baseline = driver_run(root, size, reps)
            down, total, base = statistics.median(downtimes), statistics.median(totals), statistics.median(baseline)
            ok = down <= BASELINE_FRACTION * base and (size != 16 or down <= DOWNTIME_TARGET_S)
            failed |= not ok
            print(f"live migration, {size} MiB guest: downtime p50 {down * 1000:.1f} ms (max "
                  f"{max(downtimes) * 1000:.1f}), total p50 {total * 1000:.0f} ms; suspend+resume "
                  f"{base * 1000:.0f} ms (downtime/baseline {down / base:.2f}) {verdict(ok)}")  # fmt: skip
        calls = api_run(root, reps)
        print(f"VM.pool_migrate through the API, 16 MiB guest: p50 {statistics.median(calls) * 1000:.0f} ms, "
              f"max {max(calls) * 1000:.0f} ms")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

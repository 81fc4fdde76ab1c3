#!/usr/bin/env python3
"""Benchmark: what the metrics sampler costs per VM, against what the VMs themselves use.

A real ``farside server`` runs ``--count`` guests of 16 MiB that tick (and write a disk sector)
every 110 ms. Two windows of the same length are measured on the server process (utime + stime
from /proc): one with the guests running, so every 5 s round samples each of them (three QMP
queries, /proc and /sys reads, RRD updates, a VM_metrics write), and one after they are shut
down, when a round samples the host alone. The difference, per VM, is the sampling's cost on the
server (its QMP event loop included), and is compared with the guests' own QEMU CPU in the first
window as the baseline. The sampler's thread time per VM sample (from ``/metrics``) is shown too.
Other load on the host makes both windows noisier, not the difference biased.

Usage: ``python bench/metrics.py [--quick] [--count N]``. Every QEMU is stopped and the
temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import httpx
from prometheus_client.parser import text_string_to_metric_families

from pools import PoolServer, make_pool
from vms import bootable_vm, make_sr, qemu_pids, wait_serial

TICKS = os.sysconf("SC_CLK_TCK")
STEP_S = 5.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def sampler(server: PoolServer, session: str) -> dict[str, float]:
    text = httpx.get(server.url + "/metrics", params={"session_id": session}, timeout=30).text
    families = text_string_to_metric_families(text)
    return {f.name: f.samples[0].value for f in families if f.name.startswith("farside_metrics")}


def window(server: PoolServer, pids: list[int], seconds: float) -> tuple[float, float]:
    """CPU seconds of the server and of the QEMUs ``pids`` over ``seconds`` of wall time."""
    assert server.process is not None
    server_before = cpu_seconds(server.process.pid)
    qemu_before = sum(cpu_seconds(p) for p in pids)
    time.sleep(seconds)
    return cpu_seconds(server.process.pid) - server_before, sum(cpu_seconds(p) for p in pids) - qemu_before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 s windows instead of 60 s")
    parser.add_argument("--count", type=int, default=4, help="running guests (default 4)")
    args = parser.parse_args()
    seconds = 20.0 if args.quick else 60.0
    with tempfile.TemporaryDirectory(prefix="farside-bench-metrics-") as tmp:
        make_pool(Path(tmp) / "pool", lun_roots=[tmp])
        server = PoolServer(Path(tmp) / "pool").start()
        try:
            s = server.session()
            sr = make_sr(s, Path(tmp) / "lun")
            vms = [bootable_vm(server, s, sr, f"m{i}", counter=True) for i in range(args.count)]
            for vm in vms:
                s.xenapi.VM.start(vm, False, False)
            for i, vm in enumerate(vms):
                wait_serial(server, s, vm, f"BOOT m{i}".encode())
            time.sleep(2 * STEP_S)  # the first rounds have made every RRD
            pids = qemu_pids(server)
            before = sampler(server, s.handle)
            busy_server, busy_qemu = window(server, pids, seconds)
            after = sampler(server, s.handle)
            for vm in vms:
                s.xenapi.VM.hard_shutdown(vm)
            time.sleep(STEP_S)
            idle_server, _ = window(server, [], seconds)
        finally:
            server.stop()
    samples = after["farside_metrics_sampler_vm_samples"] - before["farside_metrics_sampler_vm_samples"]
    thread = after["farside_metrics_sampler_cpu_seconds"] - before["farside_metrics_sampler_cpu_seconds"]
    per_vm = max(busy_server - idle_server, 0.0) / args.count / seconds  # CPU seconds per second
    guest = busy_qemu / args.count / seconds
    print(f"farside bench/metrics.py: {args.count} ticking guests, {seconds:.0f} s windows, a round every 5 s")
    print(f"  server CPU with the guests running          {busy_server / seconds * 100:7.3f} % of a core")
    print(f"  server CPU with no guest (host-only rounds) {idle_server / seconds * 100:7.3f} % of a core")
    print(f"  sampling cost per VM (the difference / N)   {per_vm * 100:7.3f} % of a core")
    per_sample = thread / max(samples, 1) * 1000
    print(f"  sampler thread per VM sample                {per_sample:7.3f} ms ({samples:.0f} samples)")
    print(f"  baseline: each guest's own QEMU             {guest * 100:7.3f} % of a core")
    ratio = per_vm / guest if guest else float("inf")
    print(f"ratio sampling/guest: {ratio:.3f} (target: under 0.1, and under 1 % of a core per VM: "
          f"{'PASS' if ratio < 0.1 and per_vm < 0.01 else 'MISS'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

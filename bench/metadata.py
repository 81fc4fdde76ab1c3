#!/usr/bin/env python3
"""Benchmark of metadata replication on a real ``farside server`` process, over loopback HTTP.

The issue's benchmark. For pools of 100, 1,000 and 10,000 VMs with full records (each VM with a
VBD, a VIF, its VM_metrics and most with VM_guest_metrics; the pool is built as ``bench/api.py``
builds it):

1. The latency that replication adds to ``VM.set_name_label``: ``--calls`` calls (300; 100 with
   ``--quick``) with replication off, then with one metadata VDI
   (``SR.enable_database_replication`` on one SR), then with eight (one on each of 8 file SRs, each
   on its own LUN directory), then once more with replication off after
   ``SR.disable_database_replication`` on all eight. p50 and p99 of each, and what 1 and 8 VDIs
   add to the baseline: both "off" runs pooled, the one before and the one after the replicated
   runs, so a machine that drifts during the run moves the baseline with it. Calls are raw XML-RPC
   (``http.client`` on a keep-alive connection, pre-built bodies, answers checked but not parsed
   while timed), each renaming a different VM to a label of the same length.
2. Bytes written per change: the metadata file's used bytes (``fmt.newest``: the current half's
   end, just past the last good record) before and after the timed calls, divided by the number
   of calls; the number of delta records added is checked to equal the number of calls. For 8
   VDIs, every file is measured.
3. The time of a full rewrite: ``SR.enable_database_replication`` on a fresh SR, end to end from
   the client (it creates the metadata VDI and writes a full copy synchronously, with two
   fdatasyncs), first with no other target, then for the 7 further SRs; and in process, after the
   server has stopped, on the same database: the full copy the replicator takes
   (``state.full_payload`` under a read lock, as ``Replicator._full`` does) and
   ``MetadataFile.write_full`` on a fresh file, with orjson, zlib and BLAKE2b timed on their own.
   The size of the full-copy record is reported.
4. ``VDI.open_database`` on the metadata VDI, end to end from the client, and ``VM.get_all_records``
   on the session it returns (time to the last byte; the answer is then parsed and must hold every
   VM); and in process on the same file: ``fmt.newest``, ``state.load`` and the XML-RPC encoding of
   every VM record (what the server does for these two calls).

Targets: bytes per change independent of pool size (here: within 10% from the smallest pool to
the largest); p99 added latency at most 10 ms with one metadata VDI; a full rewrite and
``open_database`` of 10,000 VMs within 2 s each.

Usage: ``.venv/bin/python bench/metadata.py [--quick] [--sizes 100,1000,10000] [--calls N]``.
``--quick`` runs 100 and 1,000 VMs with 100 calls per run. Pools are written straight into the
pool database before the server starts; the server is started and stopped as ``tests/pools.py``
does it, and every file lives in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import xmlrpc.client
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from farside.api.records import RecordCache
from farside.db import Database
from farside.model.templates import DEFAULT_TEMPLATES
from farside.model.types import now
from farside.replication import format as fmt
from farside.replication import state
from farside.replication.target import MetadataFile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bigpool import populate, quantile, server_cpu_s, timed

from pools import ADMIN_PASSWORD, PoolServer
from vms import make_sr

GIB = 1024**3
MIB = 1024**2
XML = "text/xml"
# Within the first bytes of every successful XML-RPC answer.
XML_SUCCESS = b"<name>Status</name><value>Success</value>"
SR_COUNT = 8
WARMUP_CALLS = 20
# Targets from the issue.
P99_ADDED_TARGET_S = 0.010
FULL_REWRITE_TARGET_S = 2.0
OPEN_DATABASE_TARGET_S = 2.0
TARGET_POOL = 10_000
# "Independent of pool size": the largest pool's bytes per change within this factor of the smallest's.
BYTES_SPREAD = 1.10
OFF, ONE, EIGHT, OFF_AGAIN = "off", "1 VDI", "8 VDIs", "off again"
PHASES = (OFF, ONE, EIGHT, OFF_AGAIN)


# -- the pool (as bench/api.py builds it) -----------------------------------------------------


# -- a client that does not parse while timed --------------------------------------------------


class RawClient:
    """One keep-alive HTTP connection posting XML-RPC bodies and reading whole answers."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def post(self, body: bytes) -> tuple[float, bytes]:
        """Seconds from sending ``body`` until the last byte of the answer, and the answer."""
        start = time.perf_counter()
        try:
            self.conn.request("POST", "/", body, {"Content-Type": XML})
            response = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closes connections idle for longer than its keep-alive timeout (5 s);
            # reconnect once, as the SDK's transport does, and time the call again.
            self.conn.close()
            start = time.perf_counter()
            self.conn.request("POST", "/", body, {"Content-Type": XML})
            response = self.conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
        return elapsed, data

    def timed(self, method: str, *params: Any) -> tuple[float, Any]:
        """Seconds to the last byte of ``method``'s answer (body built before), and its value."""
        elapsed, data = self.post(xmlrpc.client.dumps(params, method).encode())
        result = _answer(data)
        if result["Status"] != "Success":
            raise RuntimeError(f"{method}: {result['ErrorDescription']}")
        return elapsed, result["Value"]

    def call(self, method: str, *params: Any) -> Any:
        return self.timed(method, *params)[1]

    def login(self) -> str:
        session: str = self.call("session.login_with_password", "root", ADMIN_PASSWORD, "1.0", "bench")
        return session

    def close(self) -> None:
        self.conn.close()


def _answer(data: bytes) -> dict[str, Any]:
    """The ``{Status, Value | ErrorDescription}`` struct of an XML-RPC answer."""
    (result,), _ = xmlrpc.client.loads(data)
    if not isinstance(result, dict):
        raise RuntimeError(f"not a XenAPI answer: {data[:200]!r}")
    return result


# -- measurements -----------------------------------------------------------------------------


@dataclass
class Phase:
    """One run of timed ``VM.set_name_label`` calls."""

    latencies_s: list[float]
    cpu_per_call_s: float  # mean CPU seconds (user + system) of the server process per call


@dataclass
class Usage:
    """What a metadata file holds, read as a reader at the other site reads it."""

    half_size: int
    half: int
    end: int  # bytes used in the current half
    deltas: int
    generation: int
    full_size: int  # bytes of the full-copy record
    label: str  # the name_label the newest copy gives the VM asked about ("" when none asked)


@dataclass
class FullCopy:
    """A full copy taken and written in process, as the replicator does it."""

    build_s: float  # state.full_payload under the database's read lock
    write_s: float  # MetadataFile.write_full: encode, pwrite, fdatasync, header, fdatasync
    orjson_s: float
    zlib_s: float
    digest_s: float
    json_size: int
    record_size: int

    @property
    def total_s(self) -> float:
        return self.build_s + self.write_s


@dataclass
class Opened:
    """VDI.open_database and VM.get_all_records, done in process on the same file."""

    newest_s: float  # fmt.newest: read both halves, check, decompress and parse the newest copy
    load_s: float  # state.load: the in-memory database
    encode_s: float  # its VM.get_all_records XML-RPC answer (cold, as every foreign-session call is)


@dataclass
class PoolResult:
    vms: int
    populate_s: float = math.nan
    start_s: float = math.nan
    phases: dict[str, Phase] = field(default_factory=dict)
    enable_first_s: float = math.nan  # SR.enable_database_replication, fresh SR, no target yet
    enable_more_s: list[float] = field(default_factory=list)  # the 7 further SRs
    full_record_size: int = 0
    half_size: int = 0
    bytes_per_change: dict[str, list[float]] = field(default_factory=dict)  # phase -> per metadata VDI
    open_s: list[float] = field(default_factory=list)
    all_records_s: list[float] = field(default_factory=list)
    all_records_size: int = 0
    full: FullCopy | None = None
    opened: Opened | None = None


def usage(path: Path, vm: str = "") -> Usage:
    """The file's newest copy; only numbers are kept (a 10,000-VM copy must not stay in memory
    while calls are timed: this process's garbage collector would walk it)."""
    with open(path, "rb") as fh:
        snapshot, header, halves = fmt.newest(fh)
    if snapshot is None or not header.valid:
        raise RuntimeError(f"{path} holds no complete copy")
    half = halves[snapshot.half]
    assert half.full is not None
    label = str(snapshot.objects["VM"][vm]["name_label"]) if vm else ""
    return Usage(header.half_size, snapshot.half, half.end, len(half.deltas), half.generation, half.full.size, label)


def rename_bodies(session: str, refs: list[str], phase: int, start: int, count: int) -> list[bytes]:
    """``VM.set_name_label`` bodies, each for another VM, every label of the same length."""
    return [
        xmlrpc.client.dumps(
            (session, refs[k * 7919 % len(refs)], f"renamed-{phase}-{k:05d}.prod.example.com"), "VM.set_name_label"
        ).encode()
        for k in range(start, start + count)
    ]


def run_calls(client: RawClient, pid: int, bodies: list[bytes]) -> Phase:
    latencies = []
    gc.collect()  # this process holds nothing big now; no collection of its own should land in a call
    cpu = server_cpu_s(pid)
    for body in bodies:
        elapsed, data = client.post(body)
        if XML_SUCCESS not in data[:300]:
            raise RuntimeError(f"VM.set_name_label failed: {data[:400]!r}")
        latencies.append(elapsed)
    return Phase(latencies, (server_cpu_s(pid) - cpu) / len(bodies))


def measure_phase(
    client: RawClient, pid: int, session: str, refs: list[str], index: int, calls: int, files: list[Path]
) -> tuple[Phase, list[float]]:
    """Warm-up calls, then ``calls`` timed ones; the bytes each metadata file grew by per call."""
    client.post(xmlrpc.client.dumps((session,), "session.get_this_host").encode())  # reconnect if idle
    for body in rename_bodies(session, refs, index, 0, WARMUP_CALLS):
        client.post(body)
    before = [usage(p) for p in files]
    phase = run_calls(client, pid, rename_bodies(session, refs, index, WARMUP_CALLS, calls))
    per_change = []
    last = refs[(WARMUP_CALLS + calls - 1) * 7919 % len(refs)]
    label = f"renamed-{index}-{WARMUP_CALLS + calls - 1:05d}.prod.example.com"
    for path, b in zip(files, before, strict=True):
        a = usage(path, last)
        if a.half != b.half:
            raise RuntimeError(f"{path}: a new full copy was written during the run; bytes per change unknown")
        if a.deltas - b.deltas != calls:
            raise RuntimeError(f"{path}: {a.deltas - b.deltas} deltas for {calls} changes")
        if a.label != label:
            raise RuntimeError(f"{path}: the last change is not in the newest copy")
        per_change.append((a.end - b.end) / calls)
    return phase, per_change


def metadata_vdi(client: RawClient, session: str, sr: str, lun: Path) -> tuple[str, Path]:
    """This pool's metadata VDI on ``sr`` and its image file."""
    for vdi in client.call("SR.get_VDIs", session, sr):
        if client.call("VDI.get_type", session, vdi) == "metadata":
            return vdi, lun / client.call("VDI.get_location", session, vdi)
    raise RuntimeError(f"no metadata VDI on SR {sr}")


def measure_open(client: RawClient, session: str, vdi: str, vms: int, repeat: int, result: PoolResult) -> None:
    """VDI.open_database end to end, then VM.get_all_records on the session it returns."""
    for _ in range(repeat):
        elapsed, foreign = client.timed("VDI.open_database", session, vdi)
        result.open_s.append(elapsed)
        elapsed, data = client.post(xmlrpc.client.dumps((foreign,), "VM.get_all_records").encode())
        result.all_records_s.append(elapsed)
        result.all_records_size = len(data)
        answer = _answer(data)
        if answer["Status"] != "Success" or len(answer["Value"]) != vms:
            raise RuntimeError(f"VM.get_all_records on the opened database: {str(answer)[:300]}")
        del data, answer
        client.call("session.logout", foreign)


def full_copy_in_process(db_path: Path, scratch: Path, half_size: int, repeat: int) -> FullCopy:
    """What ``Replicator._full`` and ``MetadataFile.write_full`` do, timed apart, on the same database."""
    db = Database.open(db_path)
    try:
        with db.read() as tx:
            pool_ref = tx.refs("pool")[0]
        builds, writes = [], []
        payload: dict[str, Any] = {}
        for _ in range(repeat):
            gc.collect()
            start = time.perf_counter()
            with db.read() as tx:
                generation = db.generation
                pool = tx.get_record("pool", pool_ref)
                payload = state.full_payload(tx, pool["uuid"], pool["name_label"], generation, now())
            builds.append(time.perf_counter() - start)
            path = scratch / "full-copy.raw"
            with open(path, "wb") as fh:
                fh.truncate(fmt.HEADER_SIZE + 2 * half_size)
            target = MetadataFile(path, half_size, bytes(32))  # any key: the cost is the same
            try:
                gc.collect()
                start = time.perf_counter()
                target.write_full(generation, payload)
                writes.append(time.perf_counter() - start)
                record_size = target.offset
            finally:
                target.close()
                path.unlink()
        data = orjson.dumps(payload)
        body = zlib.compress(data, fmt._ZLIB_LEVEL)
        return FullCopy(
            build_s=statistics.median(builds),
            write_s=statistics.median(writes),
            orjson_s=timed(lambda: orjson.dumps(payload), repeat),
            zlib_s=timed(lambda: zlib.compress(data, fmt._ZLIB_LEVEL), repeat),
            digest_s=timed(lambda: fmt.digest(body), repeat),
            json_size=len(data),
            record_size=record_size,
        )
    finally:
        db.close()


def open_in_process(path: Path, vms: int) -> Opened:
    """What the server does for VDI.open_database and a VM.get_all_records on its session."""
    gc.collect()
    start = time.perf_counter()
    with open(path, "rb") as fh:
        snapshot, _, _ = fmt.newest(fh)
    newest_s = time.perf_counter() - start
    assert snapshot is not None
    start = time.perf_counter()
    db = state.load(snapshot.objects, "bench")
    load_s = time.perf_counter() - start
    try:
        start = time.perf_counter()
        RecordCache(db).all_records("VM").xml_response()
        encode_s = time.perf_counter() - start
        with db.read() as tx:
            if len(tx.refs("VM")) != vms + len(DEFAULT_TEMPLATES):
                raise RuntimeError("the loaded metadata lacks VMs")
    finally:
        db.close()
    return Opened(newest_s, load_s, encode_s)


def bench_pool(tmp: Path, vms: int, calls: int, repeat: int) -> PoolResult:
    """Every measurement on one pool of ``vms`` VMs; the server is stopped before returning."""
    result = PoolResult(vms)
    data_dir = tmp / f"pool-{vms}"
    began = time.perf_counter()
    populate(data_dir, vms)
    result.populate_s = time.perf_counter() - began
    began = time.perf_counter()
    server = PoolServer(data_dir).start()
    result.start_s = time.perf_counter() - began
    client = RawClient(server.port)
    try:
        assert server.process is not None
        pid = server.process.pid
        sdk = server.session()
        luns = [tmp / f"pool-{vms}-lun-{k}" for k in range(SR_COUNT)]
        srs = [make_sr(sdk, lun, f"LUN {k}") for k, lun in enumerate(luns)]
        sdk.xenapi.session.logout()
        session = client.login()
        refs: list[str] = client.call("VM.get_all", session)
        if len(refs) != vms + len(DEFAULT_TEMPLATES) + 1:  # a new pool's templates and control domain are VMs too
            raise RuntimeError(f"the server holds {len(refs)} VMs, expected {vms}, the default templates and dom0")
        print(
            f"  {vms:,} VMs: pool written in {result.populate_s:.1f} s, server ready in {result.start_s:.1f} s; "
            f"{_load()}",
            flush=True,
        )

        result.phases[OFF], _ = measure_phase(client, pid, session, refs, 0, calls, [])

        result.enable_first_s, _ = client.timed("SR.enable_database_replication", session, srs[0])
        files = [metadata_vdi(client, session, srs[0], luns[0])]
        first = usage(files[0][1])
        result.full_record_size, result.half_size = first.full_size, first.half_size
        result.phases[ONE], result.bytes_per_change[ONE] = measure_phase(
            client, pid, session, refs, 1, calls, [p for _, p in files]
        )

        for sr, lun in zip(srs[1:], luns[1:], strict=True):
            result.enable_more_s.append(client.timed("SR.enable_database_replication", session, sr)[0])
            files.append(metadata_vdi(client, session, sr, lun))
        result.phases[EIGHT], result.bytes_per_change[EIGHT] = measure_phase(
            client, pid, session, refs, 2, calls, [p for _, p in files]
        )
        print(f"  {vms:,} VMs: latencies measured; opening the metadata; {_load()}", flush=True)

        measure_open(client, session, files[0][0], vms, repeat, result)
        result.opened = open_in_process(files[0][1], vms)

        for sr in srs:
            client.call("SR.disable_database_replication", session, sr)
        if any(p.exists() for _, p in files):
            raise RuntimeError("SR.disable_database_replication left a metadata VDI image behind")
        result.phases[OFF_AGAIN], _ = measure_phase(client, pid, session, refs, 3, calls, [])
    finally:
        client.close()
        server.stop()
    result.full = full_copy_in_process(data_dir / "pool.db", tmp, result.half_size, repeat)
    shutil.rmtree(data_dir, ignore_errors=True)
    for lun in tmp.glob(f"pool-{vms}-lun-*"):
        shutil.rmtree(lun, ignore_errors=True)
    return result


# -- the report -------------------------------------------------------------------------------


def fmt_s(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    if seconds < 1:
        return f"{seconds * 1000:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: float) -> str:
    if n >= MIB:
        return f"{n / MIB:.2f} MiB"
    if n >= 10 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n:,.0f} B"


def verdict(ok: bool) -> str:
    return "[PASS]" if ok else "[MISS]"


def print_report(results: list[PoolResult], calls: int, repeat: int) -> None:
    width = 14
    label_width = 52

    def row(label: str, cells: list[str]) -> None:
        print(label.ljust(label_width) + "".join(c.rjust(width) for c in cells))

    def q(r: PoolResult, phase: str, p: float) -> float:
        return quantile(r.phases[phase].latencies_s, p)

    def off(r: PoolResult, p: float) -> float:
        """The baseline: both runs with replication off, the one before and the one after, pooled."""
        return quantile(r.phases[OFF].latencies_s + r.phases[OFF_AGAIN].latencies_s, p)

    print()
    print(
        f"VM.set_name_label: time to the last byte of the answer, {calls} calls per run "
        "(raw XML-RPC, keep-alive, each call another VM)"
    )
    row("", [f"{r.vms:,} VMs" for r in results])
    for phase in PHASES:
        for name, p in (("p50", 0.5), ("p99", 0.99)):
            row(f"  replication {phase}: {name}", [fmt_s(q(r, phase, p)) for r in results])
    for name, p in (("p50", 0.5), ("p99", 0.99)):
        row(f"  baseline: both off runs pooled: {name}", [fmt_s(off(r, p)) for r in results])
    for phase in (ONE, EIGHT):
        for name, p in (("p50", 0.5), ("p99", 0.99)):
            row(f"  added by {phase}: {name} (vs baseline)", [fmt_s(q(r, phase, p) - off(r, p)) for r in results])
    print("  server CPU per call (user + system, mean)")
    for phase in PHASES:
        row(f"    replication {phase}", [fmt_s(r.phases[phase].cpu_per_call_s) for r in results])
    print()
    print("Bytes written per change (the metadata file's used bytes after / before the calls, per call)")
    row("  1 VDI", [fmt_bytes(r.bytes_per_change[ONE][0]) for r in results])
    row("  8 VDIs: each VDI (min-max)", [_span(r.bytes_per_change[EIGHT]) for r in results])
    print()
    print("Full rewrite")
    row("  full-copy record (zlib level 1 of the JSON)", [fmt_bytes(r.full_record_size) for r in results])
    row("  SR.enable_database_replication, fresh SR, no target", [fmt_s(r.enable_first_s) for r in results])
    row("  ... 7 more SRs, 1-7 targets active: median", [fmt_s(statistics.median(r.enable_more_s)) for r in results])
    row("  ... 7 more SRs: max", [fmt_s(max(r.enable_more_s)) for r in results])
    print(f"  in process, same database, after the server stopped (median of {repeat})")
    full = [r.full for r in results]
    row("    state.full_payload under the read lock", [fmt_s(f.build_s) if f else "n/a" for f in full])
    row("    MetadataFile.write_full (encode, write, 2 fsyncs)", [fmt_s(f.write_s) if f else "n/a" for f in full])
    row("      of which orjson.dumps", [fmt_s(f.orjson_s) if f else "n/a" for f in full])
    row("      of which zlib.compress level 1", [fmt_s(f.zlib_s) if f else "n/a" for f in full])
    row("      of which BLAKE2b", [fmt_s(f.digest_s) if f else "n/a" for f in full])
    row("    total", [fmt_s(f.total_s) if f else "n/a" for f in full])
    row("    JSON before compression", [fmt_bytes(f.json_size) if f else "n/a" for f in full])
    print()
    print(f"VDI.open_database on the metadata VDI (1 full copy + {calls + WARMUP_CALLS} deltas), median of {repeat}")
    row("  VDI.open_database, end to end", [fmt_s(statistics.median(r.open_s)) for r in results])
    row("  VM.get_all_records on its session (last byte)", [fmt_s(statistics.median(r.all_records_s)) for r in results])
    row("  answer size", [fmt_bytes(r.all_records_size) for r in results])
    print("  in process, same file")
    opened = [r.opened for r in results]
    row("    fmt.newest (read, check, inflate, parse)", [fmt_s(o.newest_s) if o else "n/a" for o in opened])
    row("    state.load (the in-memory database)", [fmt_s(o.load_s) if o else "n/a" for o in opened])
    row("    VM.get_all_records answer (XML-RPC), cold", [fmt_s(o.encode_s) if o else "n/a" for o in opened])
    print()
    print("Targets")
    by_size = sorted(results, key=lambda r: r.vms)
    for phase in (ONE, EIGHT):
        values = [statistics.mean(r.bytes_per_change[phase]) for r in by_size]
        spread = max(values) / min(values)
        print(
            f"  bytes per change independent of pool size, {phase} ({by_size[0].vms:,} -> {by_size[-1].vms:,} VMs: "
            f"{' / '.join(fmt_bytes(v) for v in values)}; max/min x{spread:.3f} <= x{BYTES_SPREAD:.2f})  "
            f"{verdict(spread <= BYTES_SPREAD)}"
        )
    for r in results:
        added = q(r, ONE, 0.99) - off(r, 0.99)
        print(
            f"  {r.vms:>6,} VMs  p99 added by 1 VDI <= {fmt_s(P99_ADDED_TARGET_S)}: {fmt_s(added):>9}  "
            f"{verdict(added <= P99_ADDED_TARGET_S)}"
        )
    for r in results:
        if r.vms != TARGET_POOL:
            continue
        checks = [
            ("full rewrite: SR.enable_database_replication, fresh SR", r.enable_first_s, FULL_REWRITE_TARGET_S),
            ("full rewrite: in process (full_payload + write_full)", r.full.total_s if r.full else math.nan,
             FULL_REWRITE_TARGET_S),
            ("VDI.open_database, end to end", statistics.median(r.open_s), OPEN_DATABASE_TARGET_S),
        ]  # fmt: skip
        for label, seconds, target in checks:
            print(f"  {r.vms:>6,} VMs  {label} <= {fmt_s(target)}: {fmt_s(seconds):>9}  {verdict(seconds <= target)}")
    if all(r.vms != TARGET_POOL for r in results):
        print(f"  full rewrite and open_database targets: for {TARGET_POOL:,} VMs, not run (add it to --sizes)")


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return fmt_bytes(low) if low == high else f"{fmt_bytes(low)}-{fmt_bytes(high)}"


# -- main -------------------------------------------------------------------------------------


def _load() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100 and 1,000 VMs, 100 calls per run")
    parser.add_argument("--sizes", default=None, help="pool sizes in VMs, comma-separated (default 100,1000,10000)")
    parser.add_argument("--calls", type=int, default=None, help="timed calls per run (default 300, 100 with --quick)")
    args = parser.parse_args()
    sizes = [int(s) for s in (args.sizes or ("100,1000" if args.quick else "100,1000,10000")).split(",")]
    calls: int = args.calls or (100 if args.quick else 300)
    repeat = 1 if args.quick else 3
    if calls < 1 or any(n < 1 for n in sizes):
        parser.error("--calls and every size must be at least 1")

    print(
        f"farside bench/metadata.py: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"{'quick' if args.quick else 'full'} mode, {_load()}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="farside-bench-metadata-"))
    print(f"metadata VDIs: {SR_COUNT} file SRs, each on its own LUN directory under {tmp}")
    results: list[PoolResult] = []
    try:
        for n in sizes:
            results.append(bench_pool(tmp, n, calls, repeat))
        print_report(results, calls, repeat)
        print()
        print(f"done, {_load()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

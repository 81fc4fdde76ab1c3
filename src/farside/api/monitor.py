"""The metrics sampler: every 5 s, the host's and each running VM's figures go into their RRDs.

As xcp-rrdd does: one RRD per VM and one for the host, all updated in one round with one
timestamp (so ``/rrd_updates`` can put their rows side by side); a data source is in an RRD when
it is a default one or a client asked for it (``record_data_source``); ``forget_data_source_archives``
drops its history. A VM's RRD outlives a halt (its history stays readable) and goes when the VM
does. RRDs live in memory (at most a few hundred kB a VM), so a restarted server starts them afresh.

The round also writes what it measured into ``VM_metrics`` (``VCPUs_number``,
``VCPUs_utilisation``, ``memory_actual``, ``last_updated``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from farside.db import Database
from farside.errors import InvalidValue
from farside.hypervisor import host as host_stats
from farside.hypervisor.driver import DomainStats, Driver
from farside.hypervisor.errors import DomainError
from farside.model.rrd import CF, STEP_S, DSType, NoArchive, Rrd, Source, UnknownSource
from farside.model.rrd_export import Updates, updates
from farside.model.types import NULL_REF, now

log = logging.getLogger(__name__)
# At most one warning a minute about skipped rounds.
SKIP_WARNING_S = 60.0
HOST_KEY = "host"


@dataclass(frozen=True)
class Figure:
    """A data source a VM or the host offers (xapi's ``Ds.ds``), with this round's reading."""

    name: str
    description: str
    units: str
    type: DSType
    reading: float
    min: float = 0.0
    max: float = math.inf
    default: bool = True

    def source(self) -> Source:
        return Source(self.name, self.type, self.min, self.max)


def _counter(name: str, description: str, units: str, reading: float, default: bool = True) -> Figure:
    """A figure whose reading is a counter: the RRD keeps its rate per second."""
    return Figure(name, description, units, DSType.DERIVE, reading, default=default)


def vm_figures(stats: DomainStats, vbd_devices: dict[int, str], vif_devices: dict[int, str]) -> list[Figure]:
    """A VM's figures in xcp-rrdd's names: ``cpuN``, ``memory``, ``vbd_DEV_read``/``_write``
    (and the non-default ``_iops_read``/``_iops_write``), ``vif_N_rx``/``_tx``."""
    figures = [
        Figure(f"cpu{i}", f"CPU{i} usage", "(fraction)", DSType.DERIVE, seconds, max=1.0)
        for i, seconds in enumerate(stats.vcpu_seconds)
    ]
    figures.append(Figure("memory", "Memory currently allocated", "B", DSType.GAUGE, float(stats.memory_bytes)))
    for userdevice, disk in sorted(stats.disks.items()):
        dev = vbd_devices.get(userdevice)
        if dev is None:
            continue
        figures += [
            _counter(f"vbd_{dev}_read", f"Reads from device {dev}, in B/s", "B/s", disk.read_bytes),
            _counter(f"vbd_{dev}_write", f"Writes to device {dev}, in B/s", "B/s", disk.write_bytes),
            _counter(f"vbd_{dev}_iops_read", f"Read requests/s from device {dev}", "requests/s", disk.read_ops, False),
            _counter(f"vbd_{dev}_iops_write", f"Write requests/s to device {dev}", "requests/s", disk.write_ops, False),
        ]
    for device, nic in sorted(stats.nics.items()):
        dev = vif_devices.get(device, str(device))
        what = f"on virtual interface number '{dev}'"
        figures += [
            _counter(f"vif_{dev}_rx", f"Bytes per second received {what}", "B/s", nic.rx_bytes),
            _counter(f"vif_{dev}_tx", f"Bytes per second transmitted {what}", "B/s", nic.tx_bytes),
        ]
    return figures


def host_figures(stats: host_stats.HostStats) -> list[Figure]:
    """The host's figures in xcp-rrdd's names: ``cpuN``, ``cpu_avg``, ``memory_total_kib``,
    ``memory_free_kib``, ``loadavg``."""
    cores = stats.cpu_busy_seconds
    figures = [
        Figure(f"cpu{i}", f"Physical cpu usage for cpu {i}", "(fraction)", DSType.DERIVE, busy, max=1.0)
        for i, busy in enumerate(cores)
    ]
    if cores:
        average = sum(cores) / len(cores)
        figures.append(Figure("cpu_avg", "Average physical cpu usage", "(fraction)", DSType.DERIVE, average, max=1.0))
    figures += [
        Figure(
            "memory_total_kib", "Total amount of memory in the host", "KiB", DSType.GAUGE, stats.memory_total / 1024
        ),
        Figure("memory_free_kib", "Total amount of free memory", "KiB", DSType.GAUGE, stats.memory_free / 1024),
        Figure("loadavg", "Domain0 loadavg", "", DSType.GAUGE, stats.loadavg),
    ]
    return figures


class MonitorService:
    """The RRDs of one host and its VMs, and the thread that samples into them.

    Args:
        db: the pool database (which VMs run here, their VBD and VIF devices).
        driver: the hypervisor driver (each domain's counters).
        host: this host's ref.
        interval: seconds between rounds (xapi's 5 s step).
        clock: the time a round is stamped with.
    """

    def __init__(
        self,
        db: Database,
        driver: Driver,
        host: str,
        interval: float = STEP_S,
        clock: Callable[[], float] = time.time,
        read_host: Callable[[], host_stats.HostStats] = host_stats.sample,
    ) -> None:
        self._db, self._driver, self._host = db, driver, host
        self._interval, self._clock, self._read_host = interval, clock, read_host
        self._lock = threading.Lock()
        self._rrds: dict[str, Rrd] = {}
        self._figures: dict[str, dict[str, Figure]] = {}  # the latest figures each object offered
        self._enabled: dict[str, set[str]] = {}  # non-default sources a client asked for
        self._live: list[str] = []  # the VMs sampled in the last round
        self._host_uuid = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # CPU time the rounds took (this thread's), and how many VM samples they made.
        self.cpu_seconds = 0.0
        self.vm_samples = 0
        self.rounds = 0

    # -- the thread ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="farside-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        warned = -SKIP_WARNING_S
        while not self._stop.is_set():
            try:
                self.sample_once()
            except OSError as exc:
                # The host refused a read (out of descriptors under a connection flood, say): the
                # round is skipped, said in one line a minute at most, never a traceback a round.
                if time.monotonic() - warned >= SKIP_WARNING_S:
                    warned = time.monotonic()
                    log.warning("metrics rounds skipped: %s", exc)
            except Exception:  # a bug: the next round tries again, the server carries on
                log.exception("metrics round failed")
            # Rounds on the step's boundaries, as xcp-rrdd's, so every RRD gets one PDP per step.
            wait = self._interval - (self._clock() % self._interval)
            self._stop.wait(wait if wait > 0.05 else self._interval)

    def sample_once(self) -> None:
        """One round: read every figure, then feed them to the RRDs with one timestamp."""
        started = time.thread_time()
        with self._db.read() as tx:
            host_uuid = tx.get_field("host", self._host, "uuid")
            metrics_of = {}
            devices = {}
            for vm in tx.get_field("host", self._host, "resident_VMs"):
                if not tx.exists("VM", vm):
                    continue
                record = tx.get_record("VM", vm)
                metrics_of[record["uuid"]] = record["metrics"]
                vbds = {}
                for vbd in record["VBDs"]:
                    if tx.exists("VBD", vbd):
                        userdevice, device = tx.get_field("VBD", vbd, "userdevice"), tx.get_field("VBD", vbd, "device")
                        if userdevice.isdigit():
                            vbds[int(userdevice)] = device or userdevice
                vifs = {}
                for vif in record["VIFs"]:
                    if tx.exists("VIF", vif) and (device := tx.get_field("VIF", vif, "device")).isdigit():
                        vifs[int(device)] = device
                devices[record["uuid"]] = (vbds, vifs)
            known = {r["uuid"] for r in tx.select("VM", ("uuid",)).values()}
        figures = {}
        for uuid, (vbds, vifs) in devices.items():
            try:
                figures[uuid] = vm_figures(self._driver.stats(uuid), vbds, vifs)
            except DomainError as exc:  # halted or gone since the read: no figures this round
                log.debug("no figures of VM %s: %s", uuid, exc)
        # The host last and the stamp right after it: a busy core's rate stays within 1 only when
        # the counters are read at the time the RRD is told.
        figures[HOST_KEY] = host_figures(self._read_host())
        stamp = self._clock()
        with self._lock:
            for key, offered in figures.items():
                self._feed(key, offered, stamp)
            self._live = [k for k in figures if k != HOST_KEY]
            for gone in set(self._rrds) - known - {HOST_KEY}:
                self._drop(gone)
            self._host_uuid = host_uuid
            utilisation = {k: self._vm_metrics(k) for k in self._live}
        self._write_metrics(metrics_of, utilisation)
        self.cpu_seconds += time.thread_time() - started
        self.vm_samples += len(figures) - 1
        self.rounds += 1

    def _feed(self, key: str, offered: list[Figure], stamp: float) -> None:
        self._figures[key] = {f.name: f for f in offered}
        wanted = [f for f in offered if f.default or f.name in self._enabled.get(key, set())]
        rrd = self._rrds.get(key)
        if rrd is None:
            rrd = self._rrds[key] = Rrd([f.source() for f in wanted], stamp - self._interval)
        for figure in wanted:
            rrd.add_source(figure.source(), stamp)
        rrd.update(stamp, {f.name: f.reading for f in offered})

    def _drop(self, key: str) -> None:
        self._rrds.pop(key, None)
        self._figures.pop(key, None)
        self._enabled.pop(key, None)

    def _vm_metrics(self, key: str) -> dict[str, Any]:
        rrd = self._rrds[key]
        figures = self._figures[key]
        cpus = sorted((int(n[3:]), n) for n in figures if n.startswith("cpu") and n[3:].isdigit())
        usage = {}
        for index, name in cpus:
            value = rrd.query(name) if name in rrd.names() else math.nan
            usage[str(index)] = 0.0 if math.isnan(value) else value
        memory = figures.get("memory")
        return {
            "VCPUs_utilisation": usage,
            "VCPUs_number": len(cpus),
            "memory_actual": int(memory.reading) if memory else 0,
        }

    def _write_metrics(self, metrics_of: dict[str, str], values: dict[str, dict[str, Any]]) -> None:
        """Into VM_metrics, in one transaction. Only runtime fields each round: ``VCPUs_number`` is
        persistent (a write would replicate the metadata every 5 s), so it is written when it changes."""
        if not values:
            return
        stamp = now()
        with self._db.write() as tx:
            for uuid, fields in values.items():
                metrics = metrics_of.get(uuid, NULL_REF)
                if metrics == NULL_REF or not tx.exists("VM_metrics", metrics):
                    continue
                if tx.get_field("VM_metrics", metrics, "VCPUs_number") == fields["VCPUs_number"]:
                    fields = {k: v for k, v in fields.items() if k != "VCPUs_number"}
                tx.set_fields("VM_metrics", metrics, {**fields, "last_updated": stamp})

    # -- what the API asks -----------------------------------------------------------------------

    @contextmanager
    def rrd(self, key: str) -> Iterator[Rrd | None]:
        """The RRD of a VM (by uuid) or of the host (``HOST_KEY``), held still while in use."""
        with self._lock:
            yield self._rrds.get(key)

    def data_sources(self, key: str) -> list[dict[str, Any]]:
        """xapi's ``data_source`` records: every source the object offers, and any still recorded."""
        with self._lock:
            rrd = self._rrds.get(key)
            recorded = rrd.names() if rrd is not None else []
            figures = self._figures.get(key, {})
            names = list(figures) + [n for n in recorded if n not in figures]
            records = []
            for name in names:
                figure = figures.get(name)
                value = rrd.query(name) if rrd is not None and name in recorded else 0.0
                records.append(
                    {
                        "name_label": name,
                        "name_description": figure.description if figure else "",
                        "enabled": name in recorded,
                        "standard": figure.default if figure else True,
                        "units": figure.units if figure else "",
                        "min": figure.min if figure else 0.0,
                        "max": figure.max if figure else math.inf,
                        "value": 0.0 if math.isnan(value) else value,
                    }
                )
            return records

    def record(self, key: str, name: str) -> None:
        """Start recording ``name`` (``record_data_source``); INVALID_VALUE if the object has no such source."""
        with self._lock:
            figure = self._figures.get(key, {}).get(name)
            if figure is None:
                raise InvalidValue("data_source", name)
            self._enabled.setdefault(key, set()).add(name)
            rrd = self._rrds.get(key)
            if rrd is not None:
                rrd.add_source(figure.source(), self._clock())

    def forget(self, key: str, name: str) -> None:
        """Drop ``name`` and its history (``forget_data_source_archives``); a default source starts
        again, with no history, at the next round (as in xapi)."""
        with self._lock:
            rrd = self._rrds.get(key)
            try:
                if rrd is None:
                    raise UnknownSource(name)
                rrd.remove_source(name)
            except UnknownSource:
                raise InvalidValue("data_source", name) from None
            self._enabled.get(key, set()).discard(name)

    def query(self, key: str, name: str) -> float:
        """The latest 5 s average of ``name`` (``query_data_source``)."""
        with self._lock:
            rrd = self._rrds.get(key)
            try:
                if rrd is None:
                    raise UnknownSource(name)
                return rrd.query(name, CF.AVERAGE)
            except (UnknownSource, NoArchive):
                raise InvalidValue("data_source", name) from None

    def updates(self, start: int, interval: int, cf: CF | None, host: bool, vm_uuid: str | None) -> Updates:
        """``/rrd_updates``: the host's RRD (when asked) and the running VMs' (or one of them).

        Raises:
            NoArchive: nothing to export.
        """
        with self._lock:
            keys = [k for k in self._live if vm_uuid is None or k == vm_uuid]
            prefixed = [(f"vm:{k}:", self._rrds[k]) for k in keys if k in self._rrds]
            if host and HOST_KEY in self._rrds:
                prefixed.insert(0, (f"host:{self._host_uuid}:", self._rrds[HOST_KEY]))
            return updates(prefixed, start, interval, cf)

    def live_vms(self) -> list[str]:
        with self._lock:
            return list(self._live)

"""The pool at a glance: hosts, SRs, VMs and vApps as the console's pages show them.

Built from XenAPI records only (as the logged-in user), plus what only the LUN itself can tell:
its lease, read from the LUN, and its replication state, asked through the storage adapter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread

from farside.storage import lease
from farside.storage.replication import LunReplication
from farside.web.client import Xapi

CLASSES = ["pool", "host", "host_metrics", "host_cpu", "SR", "PBD", "VDI", "VM", "VM_appliance"]
NULL = "OpaqueRef:NULL"


@dataclass
class MetadataCopy:
    """A metadata VDI on an SR: this pool's own (replicated to) or another pool's (replicated from)."""

    uuid: str
    sr_name: str
    pool_name: str
    own: bool
    latest: bool
    generation: str
    written: str


@dataclass
class SrRow:
    uuid: str
    ref: str
    name: str
    type: str
    path: str
    attached: bool
    size: int
    used: int
    lease: str
    mirror: str
    metadata: list[MetadataCopy] = field(default_factory=list)

    @property
    def replicates_here(self) -> bool:
        """Whether this pool writes its metadata to this SR."""
        return any(m.own for m in self.metadata)

    @property
    def use_percent(self) -> int:
        return round(100 * self.used / self.size) if self.size else 0


@dataclass
class VmRow:
    uuid: str
    name: str
    power_state: str
    order: int
    start_delay: int
    shutdown_delay: int
    vapp: str
    memory: int
    vcpus: int


@dataclass
class Overview:
    pool_name: str
    pool_uuid: str
    hosts: list[dict[str, Any]]
    srs: list[SrRow]
    vms: list[VmRow]
    vapps: list[dict[str, Any]]

    @property
    def metadata(self) -> list[MetadataCopy]:
        return [m for sr in self.srs for m in sr.metadata]


async def overview(xapi: Xapi, replication: LunReplication) -> Overview:
    """Everything the pool page shows, read with the user's session."""
    records = {cls: await xapi.records(cls) for cls in CLASSES}
    pool_ref, pool = next(iter(records["pool"].items()))
    hosts = []
    for ref, host in records["host"].items():
        metrics = records["host_metrics"].get(host["metrics"], {})
        cpus = [c for c in records["host_cpu"].values() if c["host"] == ref]
        hosts.append({
            "name": host["name_label"], "address": host["address"], "uuid": host["uuid"],
            "memory_total": int(metrics.get("memory_total", 0)), "memory_free": int(metrics.get("memory_free", 0)),
            "cpus": len(cpus), "running": sum(1 for v in records["VM"].values()
                                              if v["resident_on"] == ref and v["power_state"] != "Halted"
                                              and not v["is_control_domain"]),
        })  # fmt: skip
    srs = await anyio.to_thread.run_sync(_srs, records, pool_ref, replication)
    apps = records["VM_appliance"]
    vms = sorted(
        (
            VmRow(
                r["uuid"],
                r["name_label"],
                r["power_state"],
                int(r["order"]),
                int(r["start_delay"]),
                int(r["shutdown_delay"]),
                apps.get(r["appliance"], {}).get("name_label", ""),
                int(r["memory_static_max"]),
                int(r["VCPUs_at_startup"]),
            )
            for r in records["VM"].values()
            if not (r["is_a_template"] or r["is_a_snapshot"] or r["is_control_domain"])
        ),
        key=lambda vm: (vm.vapp, vm.order, vm.name),
    )
    vapps = sorted(
        (
            {
                "uuid": a["uuid"],
                "name": a["name_label"],
                "description": a["name_description"],
                "vms": sorted(records["VM"][v]["name_label"] for v in a["VMs"] if v in records["VM"]),
            }
            for a in apps.values()
        ),
        key=lambda app: str(app["name"]),
    )
    return Overview(pool["name_label"], pool["uuid"], hosts, srs, vms, vapps)


def _srs(records: dict[str, dict[str, Any]], pool_ref: str, replication: LunReplication) -> list[SrRow]:
    """SR rows; reads each LUN's lease and asks the adapter its state (file I/O: on a worker thread)."""
    rows = []
    for ref, sr in records["SR"].items():
        pbds = [records["PBD"][p] for p in sr["PBDs"] if p in records["PBD"]]
        path = next((p["device_config"].get("path", "") for p in pbds), "")
        row = SrRow(
            sr["uuid"],
            ref,
            sr["name_label"],
            sr["type"],
            path,
            any(p["currently_attached"] for p in pbds),
            int(sr["physical_size"]),
            int(sr["physical_utilisation"]),
            lease_holder(path),
            mirror_state(path, replication),
        )
        for vdi in sorted(records["VDI"].values(), key=lambda v: str(v["uuid"])):
            if vdi["SR"] != ref or vdi["type"] != "metadata":
                continue
            config = vdi["sm_config"]
            own = vdi["metadata_of_pool"] == pool_ref
            row.metadata.append(MetadataCopy(
                vdi["uuid"], sr["name_label"], config.get("farside-pool-name", "this pool" if own else "?"), own,
                bool(vdi["metadata_latest"]), config.get("farside-generation", ""), config.get("farside-written", ""),
            ))  # fmt: skip
        rows.append(row)
    return sorted(rows, key=lambda r: (r.name, r.uuid))


def lease_holder(path: str) -> str:
    if not path:
        return "no LUN"
    try:
        held = lease.read(Path(path))
    except OSError:
        held = None
    if held is None:
        return "none"
    if held.expiry < time.time():
        return f"expired ({held.pool_name}, {held.describe_expiry()})"
    return f"{held.pool_name} until {held.describe_expiry()}"


def mirror_state(path: str, replication: LunReplication) -> str:
    if not path:
        return "unknown"
    try:
        return replication.state(Path(path)).value
    except Exception as exc:  # an adapter is third-party code: show its failure, never break the page
        return f"error: {exc}"

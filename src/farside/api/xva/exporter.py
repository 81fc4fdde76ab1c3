"""VM export to an XVA stream (``GET /export``, ``GET /export_metadata``), as export.ml writes it.

``collect`` gathers the VM and what it refers to (VBDs, VIFs, networks, disk VDIs, their SRs) as
ova.xml objects, cleaned as xapi cleans them: a VM exported Halted unless its power state is to
be kept, operations emptied, refs to objects left out made NULL. ``metadata`` is the whole tar of
a metadata export (ova.xml alone), reusable wherever a VM's metadata is kept (``.vmmeta`` files).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path

from farside.api.xva import ova
from farside.backup import chunks, tar
from farside.backup.compression import compressor
from farside.backup.disk import Disk
from farside.config import crash_point
from farside.db import Transaction
from farside.storage.lun import Lun, recorded_format

LunOf = Callable[[Transaction, str], Lun]
Progress = Callable[[int], None]
# Classes whose operations fields describe this pool's moment, not the object.
_OPERATIONS = ("current_operations", "allowed_operations")


@dataclass(frozen=True)
class DiskSpec:
    """A disk to stream: its ``Ref:N`` prefix, its VDI and its image."""

    prefix: str
    vdi: str
    path: Path
    fmt: str
    size: int


def collect(
    tx: Transaction, vm: str, hostname: str, preserve_power_state: bool = False, lun_of: LunOf | None = None
) -> tuple[bytes, list[DiskSpec]]:
    """ova.xml for ``vm``, and (when ``lun_of`` finds each disk's LUN) the disks to stream, in
    xapi's order: by prefix, lexicographically (``Ref:10`` before ``Ref:9``)."""
    order: list[tuple[str, str]] = [("VM", vm)]
    vm_record = tx.get_record("VM", vm)
    for vbd in vm_record["VBDs"]:
        order.append(("VBD", vbd))
    vdis = disk_vdis(tx, vm)
    for vif in vm_record["VIFs"]:
        order.append(("VIF", vif))
    networks = [tx.get_field("VIF", v, "network") for v in vm_record["VIFs"]]
    order += [("network", n) for n in dict.fromkeys(networks) if tx.exists("network", n)]
    order += [("VDI", v) for v in vdis]
    srs = [tx.get_field("VDI", v, "SR") for v in vdis]
    order += [("SR", s) for s in dict.fromkeys(srs) if tx.exists("SR", s)]
    table = {ref: f"Ref:{n}" for n, (_, ref) in enumerate(order)}
    objects = []
    for cls, ref in order:
        snapshot = ova.snapshot(cls, tx.get_record(cls, ref), table)
        for name in _OPERATIONS:
            if name in snapshot:
                snapshot[name] = type(snapshot[name])()
        if cls == "VM" and not preserve_power_state:
            snapshot["power_state"] = "Halted"
        objects.append(ova.Obj(cls, table[ref], snapshot))
    disks = []
    if lun_of is not None:
        for vdi in vdis:
            record = tx.get_record("VDI", vdi)
            lun = lun_of(tx, record["SR"])
            path = lun.image_path(record["location"])
            disks.append(DiskSpec(table[vdi], vdi, path, recorded_format(record["location"]), record["virtual_size"]))
    disks.sort(key=lambda d: d.prefix)
    return ova.encode(ova.version(hostname), objects), disks


def disk_vdis(tx: Transaction, vm: str) -> list[str]:
    """The VDIs an export streams: those of the VM's disk VBDs (not CDs), each once."""
    found = []
    for vbd in tx.get_field("VM", vm, "VBDs"):
        record = tx.get_record("VBD", vbd)
        if record["type"] != "CD" and tx.exists("VDI", record["VDI"]):
            found.append(record["VDI"])
    return list(dict.fromkeys(found))


def metadata(tx: Transaction, vm: str, hostname: str) -> bytes:
    """A metadata export of ``vm``: a tar holding ova.xml alone (``/export_metadata``, ``.vmmeta``)."""
    document, _ = collect(tx, vm, hostname)
    return tar.member(ova.NAME, document) + tar.END


def stream(
    document: bytes, disks: list[DiskSpec], compression: str, progress: Progress
) -> Generator[bytes, None, None]:
    """The XVA: ova.xml, each disk's chunks, the end of the archive; compressed as asked."""
    packer = compressor(compression)
    yield packer.compress(tar.member(ova.NAME, document))
    for spec in disks:
        with Disk(spec.path, spec.fmt, spec.size) as disk:
            for data, covered in chunks.write_disk(spec.prefix, disk.chunks(), disk.last):
                out = packer.compress(data)
                if out:
                    yield out
                progress(covered)
                crash_point("xva-export:streaming")
    yield packer.compress(tar.END) + packer.flush()


def total(disks: list[DiskSpec]) -> int:
    return sum(d.size for d in disks)

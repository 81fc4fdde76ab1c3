"""Helpers for tests that run real VMs through a pool server: an SR, bootable disks, serial output."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import XenAPI

from farside.storage.bootable import write_bootable

from pools import PoolServer

MIB = 1 << 20
_TICK = re.compile(rb"TICK (\d+)")


def make_sr(s: XenAPI.Session, lun: Path, name: str = "LUN") -> str:
    lun.mkdir(parents=True, exist_ok=True)
    host = s.xenapi.host.get_all()[0]
    return str(s.xenapi.SR.create(host, {"path": str(lun)}, "0", name, "", "file", "user", True, {}))


def bootable_vm(
    server: PoolServer, s: XenAPI.Session, sr: str, tag: str, *, memory_mib: int = 16, counter: bool = False
) -> str:
    """A halted VM whose disk (filled through import_raw_vdi) prints ``BOOT <tag>`` when it boots."""
    vdi = s.xenapi.VDI.create(
        {"SR": sr, "virtual_size": str(MIB), "type": "user", "name_label": f"{tag} disk", "sharable": False,
         "read_only": False, "other_config": {}, "sm_config": {"type": "raw"}}
    )  # fmt: skip
    import_bootable(server, s, vdi, tag, counter)
    size = str(memory_mib * MIB)
    vm = s.xenapi.VM.create(
        {"name_label": tag, "memory_static_max": size, "memory_dynamic_max": size, "memory_dynamic_min": size,
         "memory_static_min": size, "VCPUs_max": "1", "VCPUs_at_startup": "1"}
    )  # fmt: skip
    s.xenapi.VBD.create(
        {"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW", "type": "Disk", "empty": False,
         "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}
    )  # fmt: skip
    net = s.xenapi.network.get_all()[0]
    s.xenapi.VIF.create({"device": "0", "network": net, "VM": vm, "MAC": "", "MTU": "1500", "other_config": {}})
    return str(vm)


def import_bootable(server: PoolServer, s: XenAPI.Session, vdi: str, tag: str, counter: bool = False) -> None:
    """Fill the 1 MiB raw ``vdi`` (through import_raw_vdi) with a disk that prints ``BOOT <tag>``."""
    image = server.data_dir / f"{tag}.img"
    write_bootable(image, tag, 1, counter)
    params = {"session_id": s.handle, "vdi": vdi, "format": "raw"}
    response = httpx.put(f"{server.url}/import_raw_vdi", params=params, content=image.read_bytes(), timeout=60)
    assert response.status_code == 200, response.text
    image.unlink()


def serial(server: PoolServer, s: XenAPI.Session, vm: str) -> bytes:
    uuid = s.xenapi.VM.get_uuid(vm)
    response = httpx.get(f"{server.url}/console/serial", params={"session_id": s.handle, "uuid": uuid}, timeout=30)
    assert response.status_code == 200, response.text
    return response.content


def wait_serial(server: PoolServer, s: XenAPI.Session, vm: str, text: bytes, timeout: float = 20) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = serial(server, s, vm)
        if text in out:
            return out
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not seen on the serial console in {timeout} s: {serial(server, s, vm)[-300:]!r}")


def wait_state(s: XenAPI.Session, vm: str, state: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while s.xenapi.VM.get_power_state(vm) != state:
        if time.monotonic() > deadline:
            raise AssertionError(f"VM is {s.xenapi.VM.get_power_state(vm)}, not {state}")
        time.sleep(0.05)


def wait_task(s: XenAPI.Session, task: str, timeout: float = 20) -> dict[str, Any]:
    """The task's record once it has ended (neither pending nor cancelling)."""
    deadline = time.monotonic() + timeout
    while True:
        record: dict[str, Any] = s.xenapi.task.get_record(task)
        if record["status"] not in ("pending", "cancelling"):
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"task {record['name_label']} is still {record['status']} after {timeout} s")
        time.sleep(0.05)


def last_tick(output: bytes) -> int:
    ticks = _TICK.findall(output)
    return int(ticks[-1]) if ticks else 0


def qemu_pids(server: PoolServer) -> list[int]:
    """Live QEMU processes started for this pool (pid files under its run directory)."""
    pids = []
    for pidfile in (server.data_dir / "run").glob("*/qemu*.pid"):  # a migration's destination too
        try:
            pid = int(pidfile.read_text().strip())
            if b"qemu" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except (OSError, ValueError):
            continue
    return pids


def shop_site(server: PoolServer, lun: Path) -> tuple[XenAPI.Session, dict[str, str]]:
    """A site for DR tests: on a replicated SR, vApp "shop" of two order groups (shop-db, shop-web)
    and a standalone VM "lone" with a serial readiness probe; returns the session and uuid -> tag."""
    s = server.session()
    sr = make_sr(s, lun)
    s.xenapi.SR.enable_database_replication(sr)
    app = s.xenapi.VM_appliance.create({"name_label": "shop", "name_description": ""})
    tags = {}
    for order, tag in enumerate(("shop-db", "shop-web")):
        vm = bootable_vm(server, s, sr, tag)
        s.xenapi.VM.set_appliance(vm, app)
        s.xenapi.VM.set_order(vm, order)
        tags[s.xenapi.VM.get_uuid(vm)] = tag
    lone = bootable_vm(server, s, sr, "lone")
    s.xenapi.VM.add_to_other_config(lone, "farside-ready-serial", "BOOT lone")
    tags[s.xenapi.VM.get_uuid(lone)] = "lone"
    return s, tags

"""Big pools for the benchmarks: full XenAPI records written straight into a pool database.

Shared by ``bench/api.py`` and ``bench/metadata.py`` (and any benchmark that needs thousands of
realistic VMs): writing them through the API would take minutes.
"""

from __future__ import annotations

import gc
import math
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from farside.db import Database, Transaction
from farside.model import STORED, stored_fields
from farside.model.types import NULL_REF

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pools import make_pool

GIB = 1024**3
MIB = 1024**2
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def new_ref() -> str:
    return "OpaqueRef:" + str(uuid.uuid4())


def vm_record(
    i: int, host: str, sr: str, appliance: str, metrics: str, guest_metrics: str, suspend_vdi: str
) -> dict[str, Any]:
    """A full VM record as xapi holds it for a guest that has run before, every field given.

    VMs are halted or suspended, as a DR site holds them: a server marks VMs recorded Running
    without a live QEMU as Halted when it starts, so only the fields a halted VM has at their
    defaults in xapi too (resident_on, consoles, current_operations) are left at them.
    """
    windows = i % 3 == 0
    suspended = i % 4 == 3
    memory = (2 + i % 4 * 2) * GIB
    vcpus = 2 + i % 3 * 2
    name = f"{'win' if windows else 'web'}-{i:05d}.prod.example.com"
    template = "Windows Server 2022 (64-bit)" if windows else "Debian Bookworm 12"
    return {
        "uuid": str(uuid.uuid4()),
        # Runtime fields the server resets at start-up, as xapi recomputes them.
        "allowed_operations": ["clean_shutdown", "clean_reboot", "hard_shutdown", "snapshot"],
        "current_operations": {},
        "name_label": name,
        "name_description": f"Production {'IIS' if windows else 'nginx'} server {i} & friends; owner: ops",
        "power_state": "Suspended" if suspended else "Halted",
        "user_version": 1 + i % 3,
        "is_a_template": False,
        "is_default_template": False,
        "suspend_VDI": suspend_vdi,
        "resident_on": NULL_REF,
        "scheduled_to_be_resident_on": NULL_REF,
        "affinity": host,
        "memory_overhead": 11 * MIB + i % 7 * MIB,
        "memory_target": memory,
        "memory_static_max": memory,
        "memory_dynamic_max": memory,
        "memory_dynamic_min": memory // 2,
        "memory_static_min": 512 * MIB,
        "VCPUs_params": {"weight": "256", "cap": "0", "mask": "0,1,2,3"},
        "VCPUs_max": vcpus,
        "VCPUs_at_startup": vcpus,
        "actions_after_softreboot": "soft_reboot",
        "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart",
        "actions_after_crash": "restart",
        "VUSBs": [],
        "crash_dumps": [],
        "VTPMs": [new_ref()] if windows else [],
        "PV_bootloader": "" if windows else "pygrub",
        "PV_kernel": "",
        "PV_ramdisk": "",
        "PV_args": "" if windows else "-- quiet console=hvc0",
        "PV_bootloader_args": "",
        "PV_legacy_args": "",
        "HVM_boot_policy": "BIOS order",
        "HVM_boot_params": {"order": "cdn", "firmware": "uefi" if windows else "bios"},
        "HVM_shadow_multiplier": 1.5 if i % 7 == 0 else 1.0,
        "platform": {
            "timeoffset": "0",
            "device-model": "qemu-upstream-uefi" if windows else "qemu-upstream-compat",
            "viridian": "true" if windows else "false",
            "acpi": "1",
            "apic": "true",
            "pae": "true",
            "nx": "true",
            "hpet": "true",
            "vga": "std",
            "videoram": "8",
            "cores-per-socket": "2",
            "secureboot": "false",
            "device_id": "0002" if windows else "0001",
        },
        "PCI_bus": "",
        "other_config": {
            "base_template_name": template,
            "install-methods": "cdrom,nfs,http,ftp",
            "mac_seed": str(uuid.uuid4()),
            "owner": f"team-{i % 12}",
            "backup": "nightly",
            "import_task": NULL_REF,
        },
        "domid": -1,
        "domarch": "x64",
        "last_boot_CPU_flags": {
            "vendor": "GenuineIntel",
            "features": "1fcbfbff-f7fa3223-2d93fbff-00000023-00000001-000007ab-00000000-00000000",
        },
        "is_control_domain": False,
        "metrics": metrics,
        "guest_metrics": guest_metrics,
        "last_booted_record": (
            f"('struct' ('uuid' '{i}') ('name_label' '{name}') ('power_state' 'Running') "
            f"('memory_static_max' '{memory}') ('VCPUs_max' '{vcpus}') ('platform' (('viridian' 'true')))"
        ),
        "recommendations": (
            '<restrictions><restriction field="memory-static-max" max="1649267441664"/>'
            '<restriction field="vcpus-max" max="32"/><restriction property="number-of-vbds" max="255"/>'
            '<restriction property="number-of-vifs" max="7"/><restriction field="has-vendor-device" '
            'value="false"/></restrictions>'
        ),
        "xenstore_data": {"vm-data": "", "vm-data/mmio-hole-size": "268435456"},
        "ha_always_run": False,
        "ha_restart_priority": "restart" if i % 2 == 0 else "best-effort",
        "is_a_snapshot": False,
        "snapshot_of": NULL_REF,
        "snapshot_time": "20240131T12:00:00Z",
        "transportable_snapshot_id": "",
        "blobs": {},
        "tags": ["prod", "web" if not windows else "windows", f"rack-{i % 40:02d}"],
        "blocked_operations": {"destroy": "protected by the DR plan"} if i % 5 == 0 else {},
        "snapshot_info": {},
        "snapshot_metadata": "",
        "parent": NULL_REF,
        "bios_strings": {
            "bios-vendor": "Xen",
            "bios-version": "",
            "system-manufacturer": "Xen",
            "system-product-name": "HVM domU",
            "system-version": "",
            "system-serial-number": "",
            "baseboard-manufacturer": "",
            "hp-rombios": "",
            "oem-1": "Xen",
            "oem-2": "MS_VM_CERT/SHA1/bdbeb6e0a816d43fa6d3fe8aaef04c2bad9d3e3d",
        },
        "protection_policy": NULL_REF,
        "is_snapshot_from_vmpp": False,
        "snapshot_schedule": NULL_REF,
        "is_vmss_snapshot": False,
        "appliance": appliance,
        "start_delay": i % 5 * 10,
        "shutdown_delay": 30,
        "order": i % 10,
        "VGPUs": [],
        "attached_PCIs": [],
        "suspend_SR": sr,
        "version": 1,
        "generation_id": f"{1000 + i}:{2000 + i}" if windows else "0:0",
        "hardware_platform_version": 2,
        "has_vendor_device": windows,
        "requires_reboot": i % 50 == 0,
        "reference_label": "windows-server-2022-64" if windows else "debian-12",
        "domain_type": "hvm",
        "NVRAM": {"EFI-variables": "RkFSU0lERS1FRkktVkFSUw==" * 4} if windows else {},
        "pending_guidances": [],
        "pending_guidances_recommended": [],
        "pending_guidances_full": [],
    }


def _check_vm_record(record: dict[str, Any]) -> None:
    """Fail unless the record names every stored VM field with a value of the field's type."""
    for f in stored_fields(STORED["VM"]):
        if f.internal:
            continue
        if f.name not in record:
            raise AssertionError(f"the benchmark's VM record lacks {f.name}; add it to vm_record")
        f.type.check(record[f.name], f.name)
    fields = {f.name for f in STORED["VM"].fields}
    if set(record) - fields:
        raise AssertionError(f"VM has no fields {sorted(set(record) - fields)}")


def _add_vm(tx: Transaction, i: int, host: str, sr: str, network: str, appliance: str) -> None:
    memory = (2 + i % 4 * 2) * GIB
    vdi = tx.create(
        "VDI",
        {
            "name_label": f"vm-{i:05d} system disk",
            "name_description": "Created by the template installer",
            "SR": sr,
            "virtual_size": 32 * GIB,
            "physical_utilisation": 9 * GIB + i * MIB,
            "type": "system",
            "other_config": {"content_id": str(uuid.uuid4())},
            "location": str(uuid.uuid4()),
            "managed": True,
            "sm_config": {"vdi_type": "vhd", "host_OpaqueRef:NULL": "RW"},
        },
    )
    suspend_vdi = NULL_REF
    if i % 4 == 3:
        suspend_vdi = tx.create(
            "VDI",
            {
                "name_label": "Suspend image",
                "SR": sr,
                "virtual_size": memory + 16 * MIB,
                "type": "suspend",
                "location": str(uuid.uuid4()),
                "managed": True,
            },
        )
    metrics = tx.create("VM_metrics", {"memory_actual": memory, "VCPUs_number": 2, "hvm": True})
    guest_metrics = NULL_REF
    if i % 4 != 2:  # guests with PV tools installed
        guest_metrics = tx.create(
            "VM_guest_metrics",
            {
                "os_version": {"name": "Debian GNU/Linux 12", "distro": "debian", "major": "12"},
                "PV_drivers_version": {"major": "9", "minor": "3", "micro": "1"},
                "PV_drivers_up_to_date": True,
                "networks": {"0/ip": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"},
                "live": False,
            },
        )
    record = vm_record(i, host, sr, appliance, metrics, guest_metrics, suspend_vdi)
    if i < 3:
        _check_vm_record(record)
    vm = tx.create("VM", record)
    tx.create(
        "VBD",
        {
            "VM": vm,
            "VDI": vdi,
            "device": "xvda",
            "userdevice": "0",
            "bootable": True,
            "mode": "RW",
            "type": "Disk",
            "unpluggable": False,
            "other_config": {"owner": "true"},
            "currently_attached": False,
            "qos_supported_algorithms": ["ionice"],
        },
    )
    tx.create(
        "VIF",
        {
            "device": "0",
            "network": network,
            "VM": vm,
            "MAC": f"02:16:3e:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}",
            "MTU": 1500,
            "other_config": {"ethtool-tx": "off"},
            "currently_attached": False,
            "qos_supported_algorithms": ["ratelimit"],
            "MAC_autogenerated": True,
            "locking_mode": "network_default",
            "ipv4_configuration_mode": "None",
        },
    )


def populate(data_dir: Path, vms: int) -> None:
    """A pool as ``farside init`` makes it, then ``vms`` full VMs written in one transaction."""
    make_pool(data_dir, f"Bench {vms}")
    db = Database.open(data_dir / "pool.db")
    try:
        with db.write() as tx:
            host = tx.refs("host")[0]
            network = tx.refs("network")[0]
            sr = tx.create(
                "SR",
                {
                    "name_label": "Local storage",
                    "physical_size": 4096 * GIB,
                    "type": "ext",
                    "content_type": "user",
                },
            )
            appliances = [
                tx.create("VM_appliance", {"name_label": f"app-{a:04d}", "name_description": "tier"})
                for a in range((vms + 9) // 10)
            ]
            for i in range(vms):
                _add_vm(tx, i, host, sr, network, appliances[i // 10])
    finally:
        db.close()


def server_cpu_s(pid: int) -> float:
    """User plus system CPU seconds used so far by process ``pid`` (NaN where /proc is missing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = stat.rsplit(")", 1)[1].split()  # after the command name; fields[0] is the state
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """The median seconds of ``repeat`` calls of ``fn``, each after a full garbage collection."""
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

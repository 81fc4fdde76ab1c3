"""The lab's sample workload at site A: SRs on its LUNs, tagged bootable VMs, vApps with start
orders and delays, metadata replication on every SR, and everything running.

Every VM's disk prints ``BOOT <name>`` when it boots (``farside image bootable``), and every VM
carries a readiness probe on that text, so a failover counts a VM as started only once its disk,
the mirrored copy, has booted. Some VMs run the counter mode, writing their disks all the time.
"""

from __future__ import annotations

import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from farside.dr.probes import SERIAL_KEY
from farside.dr.session import XmlRpcSession
from farside.storage.bootable import write_bootable

MIB = 1 << 20
VM_MEMORY = 16 * MIB
VAPP_NAMES = ("shop", "crm", "erp", "mail", "wiki", "ci", "chat", "dns")


@dataclass(frozen=True)
class Plan:
    """What the workload holds: ``vapps`` vApps of two VMs (db starts first, then web after the
    db's start delay), the rest of ``vms`` standalone, every other one writing a counter."""

    vms: int
    vapps: int

    def __post_init__(self) -> None:
        if self.vms < 1:
            raise ValueError("--vms must be 1 or more")
        if self.vapps < 0:
            raise ValueError("--vapps must be 0 or more")
        if self.vms < 2 * self.vapps:
            raise ValueError(f"{self.vapps} vApps of two VMs each need --vms {2 * self.vapps} at least")
        if self.vapps > len(VAPP_NAMES):
            raise ValueError(f"at most {len(VAPP_NAMES)} vApps")

    def vapp_names(self) -> list[str]:
        return list(VAPP_NAMES[: self.vapps])

    def standalone(self) -> list[tuple[str, bool]]:
        """(name, writes a counter) of the standalone VMs."""
        return [(f"vm{i + 1}", i % 2 == 0) for i in range(self.vms - 2 * self.vapps)]


def _import(url: str, session: str, vdi: str, image: Path) -> None:
    query = urllib.parse.urlencode({"session_id": session, "vdi": vdi, "format": "raw"})
    request = urllib.request.Request(f"{url}/import_raw_vdi?{query}", data=image.read_bytes(), method="PUT")
    with urllib.request.urlopen(request, timeout=120):
        pass


def _vm(s: XmlRpcSession, sr: str, name: str, counter: bool) -> str:
    """A halted VM with a tagged bootable disk on ``sr``, a VIF on the pool's network, and a probe."""
    vdi = s.call("VDI.create", {
        "SR": sr, "virtual_size": str(MIB), "type": "user", "name_label": f"{name} disk", "name_description": "",
        "sharable": False, "read_only": False, "other_config": {}, "sm_config": {"type": "raw"},
    })  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "disk.img"
        write_bootable(image, name, 1, counter)
        _import(s.url, s.handle, vdi, image)
    vm = s.call("VM.create", {
        "name_label": name, "name_description": "Farside lab" + (", counter" if counter else ""),
        "memory_static_max": str(VM_MEMORY), "memory_dynamic_max": str(VM_MEMORY),
        "memory_dynamic_min": str(VM_MEMORY), "memory_static_min": str(VM_MEMORY),
        "VCPUs_max": "1", "VCPUs_at_startup": "1", "other_config": {SERIAL_KEY: f"BOOT {name}"},
    })  # fmt: skip
    s.call("VBD.create", {
        "VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW", "type": "Disk", "empty": False,
        "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {},
    })  # fmt: skip
    network = s.call("network.get_all")[0]
    s.call("VIF.create", {"device": "0", "network": network, "VM": vm, "MAC": "", "MTU": "1500", "other_config": {}})
    return str(vm)


def populate(s: XmlRpcSession, luns: list[Path], plan: Plan) -> None:
    """Make the workload on site A and start it: vApps on the first LUN, standalone VMs on the last."""
    host = s.call("host.get_all")[0]
    srs = []
    for lun in luns:
        lun.mkdir(parents=True, exist_ok=True)
        sr = s.call("SR.create", host, {"path": str(lun)}, "0", f"LUN {lun.name}", "", "file", "user", True, {})
        s.call("SR.enable_database_replication", sr)
        srs.append(sr)
    apps = []
    for name in plan.vapp_names():
        app = s.call("VM_appliance.create", {"name_label": name, "name_description": "Farside lab vApp"})
        for order, (role, delay) in enumerate((("db", 1), ("web", 0))):
            vm = _vm(s, srs[0], f"{name}-{role}", counter=False)
            s.call("VM.set_appliance", vm, app)
            s.call("VM.set_order", vm, str(order))
            s.call("VM.set_start_delay", vm, str(delay))
        apps.append(app)
    standalone = [_vm(s, srs[-1], name, counter) for name, counter in plan.standalone()]
    for app in apps:
        s.call("VM_appliance.start", app, False)
    for vm in standalone:
        s.call("VM.start", vm, False, False)

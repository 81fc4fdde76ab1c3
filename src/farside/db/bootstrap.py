"""A new pool's first objects: the pool, its one host and its control domain, the roles, the
default network, root.

What ``farside init`` writes, in one transaction, so a half-made pool never exists.
"""

from __future__ import annotations

from typing import Any

from farside import __version__
from farside.db import users
from farside.db.database import Database
from farside.db.transaction import Transaction
from farside.model.host_facts import HostFacts
from farside.model.roles import Role
from farside.model.templates import DEFAULT_TEMPLATES
from farside.model.types import NULL_REF, now

# XenAPI version this server speaks (XenServer 8's); clients read it from host.API_version_*.
API_VERSION_MAJOR = 2
API_VERSION_MINOR = 21
# Clients enable features by the product and platform versions they read from
# host.software_version (XenCenter by platform_version): report XenServer 8's, which speaks the
# API version above. Farside's own version goes under ``farside_version``.
PRODUCT_VERSION = "8.4.0"
PLATFORM_VERSION = "3.4.0"
_ROLE_DOCS = {
    Role.POOL_ADMIN: "The Pool Administrator role has full access to all features and settings",
    Role.POOL_OPERATOR: "The Pool Operator role manages host- and pool-wide resources",
    Role.VM_POWER_ADMIN: "The VM Power Administrator role has full access to VM and template management",
    Role.VM_ADMIN: "The VM Administrator role can manage VMs and templates",
    Role.VM_OPERATOR: "The VM Operator role can use VMs and interact with VM consoles",
    Role.READ_ONLY: "The Read-Only role can log in with basic read-only access",
}


# What the file SR driver can do, in SM's capability names; SR_METADATA makes DR possible on it.
FILE_SR_CAPABILITIES = (
    "SR_PROBE",
    "SR_UPDATE",
    "SR_METADATA",
    "VDI_CREATE",
    "VDI_DELETE",
    "VDI_ATTACH",
    "VDI_DETACH",
    "VDI_CLONE",
    "VDI_SNAPSHOT",
    "VDI_RESIZE",
    "VDI_UPDATE",
)


# An ISO library is scanned and its VDIs attached to CD drives; nothing is created in it.
ISO_SR_CAPABILITIES = ("SR_UPDATE", "VDI_ATTACH", "VDI_DETACH")


def ensure_storage_managers(tx: Transaction) -> None:
    """The SM record of each SR type Farside has (``file``, ``iso``), added where it is missing."""
    for sm in _STORAGE_MANAGERS:
        if tx.find("SM", "type", sm["type"]):
            continue
        tx.create(
            "SM",
            {
                **sm,
                "vendor": "Farside",
                "copyright": "Farside contributors",
                "version": __version__,
                "required_api_version": "1.0",
                "features": {name: 1 for name in sm["capabilities"]},
                "driver_filename": "farside.storage",
                "required_cluster_stack": [],
            },
        )


_STORAGE_MANAGERS: list[dict[str, Any]] = [
    {
        "type": "file",
        "name_label": "File SR",
        "name_description": "SR whose LUN is a directory; each VDI is an image file in it",
        "configuration": {"path": "absolute path of the LUN directory"},
        "capabilities": list(FILE_SR_CAPABILITIES),
    },
    {
        "type": "iso",
        "name_label": "ISO",
        "name_description": "Read-only library of the .iso files in a directory; each is a VDI for CD drives",
        "configuration": {"location": "absolute path of the directory of .iso files"},
        "capabilities": list(ISO_SR_CAPABILITIES),
    },
]


def ensure_default_templates(tx: Transaction) -> None:
    """The default templates (model/templates.py), each added where the pool lacks it: at
    ``farside init`` and at every server start, so an upgraded pool gains new ones."""
    have = {tx.get_field("VM", vm, "reference_label") for vm in tx.find("VM", "is_default_template", True)}
    for template in DEFAULT_TEMPLATES:
        if template["reference_label"] in have:
            continue
        metrics = tx.create("VM_metrics", {"memory_actual": template["memory_static_max"]})
        tx.create("VM", {**template, "metrics": metrics})


def ensure_control_domain(tx: Transaction, host: str) -> None:
    """The host's control-domain VM (xapi's dom0, made by create_misc at every start), added where
    it is missing, so that a pool made before it existed gets one too.

    It stands for the host's own system: Running with domid 0 and resident on the host for as
    long as the host is up, with the host's CPUs and the memory the host's system used when it
    was made. It has no disks and no QEMU; power operations and destroy refuse it (api/vms.py).
    """
    current = tx.get_field("host", host, "control_domain")
    if current != NULL_REF and tx.exists("VM", current):
        return
    metrics = tx.get_record("host_metrics", tx.get_field("host", host, "metrics"))
    memory = max(int(metrics["memory_total"]) - int(metrics["memory_free"]), 0)
    vcpus = max(len(tx.get_field("host", host, "host_CPUs")), 1)
    vm_metrics = tx.create("VM_metrics", {"memory_actual": memory, "VCPUs_number": vcpus, "state": ["running"],
                                          "start_time": now(), "last_updated": now()})  # fmt: skip
    dom0 = tx.create(
        "VM",
        {
            "name_label": f"Control domain on host: {tx.get_field('host', host, 'hostname')}",
            "name_description": "The domain which manages physical devices and manages other domains",
            "is_control_domain": True,
            "power_state": "Running",
            "resident_on": host,
            "domid": 0,
            "memory_static_max": memory,
            "memory_static_min": memory,
            "memory_dynamic_max": memory,
            "memory_dynamic_min": memory,
            "memory_target": memory,
            "VCPUs_max": vcpus,
            "VCPUs_at_startup": vcpus,
            "metrics": vm_metrics,
        },
    )
    tx.set_fields("host", host, {"control_domain": dom0})


def software_version() -> dict[str, str]:
    """The version keys of ``host.software_version`` that this server's code decides."""
    api = f"{API_VERSION_MAJOR}.{API_VERSION_MINOR}"
    return {
        "product_brand": "Farside",
        "product_version": PRODUCT_VERSION,
        "product_version_text": PRODUCT_VERSION.split(".")[0],
        "product_version_text_short": PRODUCT_VERSION.split(".")[0],
        "platform_name": "XCP",
        "platform_version": PLATFORM_VERSION,
        "xencenter_min": api,
        "xencenter_max": api,
        "farside_version": __version__,
    }


def refresh_software_version(tx: Transaction, host: str) -> None:
    """Bring the host's version keys up to this server's code, as xapi does at every start (a
    pool made by an older Farside would otherwise report that version for ever)."""
    current = tx.get_field("host", host, "software_version")
    wanted = {**current, **software_version()}
    if wanted != current:
        tx.set_fields("host", host, {"software_version": wanted})


def create_pool(db: Database, pool_name: str, host: HostFacts, admin_password: str) -> str:
    """Write the first objects of a pool; returns the pool's ref."""
    with db.write() as tx:
        roles: dict[Role, str] = {}
        for role in sorted(Role):
            subroles = list(roles.values())
            roles[role] = tx.create(
                "role",
                {"name_label": role.wire, "name_description": _ROLE_DOCS[role], "subroles": subroles},
            )
        metrics = tx.create(
            "host_metrics",
            {
                "memory_total": host.memory_total,
                "memory_free": host.memory_free,
                "live": True,
                "last_updated": now(),
            },
        )
        first = host.cpus[0] if host.cpus else None
        cpu_info = {
            "cpu_count": str(len(host.cpus)),
            "socket_count": str(host.sockets),
            "vendor": first.vendor if first else "",
            "speed": str(first.speed_mhz) if first else "0",
            "modelname": first.model_name if first else "",
            "family": first.family if first else "",
            "model": first.model if first else "",
            "stepping": first.stepping if first else "",
            "flags": first.flags if first else "",
        }
        software = {"hostname": host.hostname, "linux": host.kernel, "machine": host.machine, **software_version()}
        host_ref = tx.create(
            "host",
            {
                "name_label": host.hostname,
                "name_description": "Default install",
                "hostname": host.hostname,
                "address": host.address,
                "enabled": True,
                "metrics": metrics,
                "API_version_major": API_VERSION_MAJOR,
                "API_version_minor": API_VERSION_MINOR,
                "API_version_vendor": "Farside",
                "software_version": software,
                "cpu_info": cpu_info,
                "capabilities": ["hvm-3.0-x86_64", "hvm-3.0-x86_32"],
            },
        )
        for cpu in host.cpus:
            tx.create(
                "host_cpu",
                {
                    "host": host_ref,
                    "number": cpu.number,
                    "vendor": cpu.vendor,
                    "speed": cpu.speed_mhz,
                    "modelname": cpu.model_name,
                    "family": _int(cpu.family),
                    "model": _int(cpu.model),
                    "stepping": cpu.stepping,
                    "flags": cpu.flags,
                },
            )
        tx.create(
            "network",
            {
                "name_label": "Pool-wide network",
                "name_description": "The default network; VIFs on it share an isolated user-mode LAN "
                "unless a host bridge of this name exists",
                "bridge": "xenbr0",
                "MTU": 1500,
            },
        )
        pool = tx.create("pool", {"name_label": pool_name, "master": host_ref})
        ensure_storage_managers(tx)
        ensure_control_domain(tx, host_ref)
        ensure_default_templates(tx)
        users.add(tx, "root", Role.POOL_ADMIN, admin_password, fullname="Administrator")
    return pool


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0

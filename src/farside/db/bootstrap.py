"""A new pool's first objects: the pool, its one host, the roles, the default network, root.

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
from farside.model.types import now

# XenAPI version this server speaks (XenServer 8's); clients read it from host.API_version_*.
API_VERSION_MAJOR = 2
API_VERSION_MINOR = 21
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
        software = {
            "product_brand": "Farside",
            "product_version": __version__,
            "platform_name": "Farside",
            "platform_version": __version__,
            "hostname": host.hostname,
            "linux": host.kernel,
            "machine": host.machine,
        }
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
        ensure_default_templates(tx)
        users.add(tx, "root", Role.POOL_ADMIN, admin_password, fullname="Administrator")
    return pool


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0

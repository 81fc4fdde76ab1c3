"""The default templates a pool is made with, as a XenServer pool has them for generic guests.

Each is a VM record with ``is_a_template`` and ``is_default_template`` set and
``other_config:default_template=true``, found again by its ``reference_label`` (xapi's key for
built-in templates), so an upgrade adds the ones a pool lacks without touching the others. The
Linux guests issue adds its templates to ``DEFAULT_TEMPLATES``.
"""

from __future__ import annotations

from typing import Any

from farside.model.provision import DISKS_KEY, ProvisionDisk, render

MIB = 1 << 20
GIB = 1 << 30
DEFAULT_TEMPLATE_KEY = "default_template"
# Set on each clone of a template (xapi's Xapi_globs.base_template_name_key).
BASE_TEMPLATE_NAME_KEY = "base_template_name"


# What a new-VM wizard (XenCenter's) reads to bound its choices, in xapi's format: Farside's own
# limits, four disks (the IDE slots) and seven NICs.
RECOMMENDATIONS = (
    '<restrictions><restriction field="memory-static-max" max="137438953472"/>'
    '<restriction field="vcpus-max" max="32"/><restriction property="number-of-vbds" max="4"/>'
    '<restriction property="number-of-vifs" max="7"/></restrictions>'
)


def _template(label: str, name: str, description: str, memory: int, disks: list[ProvisionDisk],
              install_methods: str) -> dict[str, Any]:  # fmt: skip
    return {
        "name_label": name,
        "name_description": description,
        "reference_label": label,
        "is_a_template": True,
        "is_default_template": True,
        "power_state": "Halted",
        "domid": -1,
        "user_version": 1,
        "memory_static_min": memory,
        "memory_dynamic_min": memory,
        "memory_dynamic_max": memory,
        "memory_static_max": memory,
        "VCPUs_max": 1,
        "VCPUs_at_startup": 1,
        "HVM_boot_policy": "BIOS order",
        "HVM_boot_params": {"order": "cdn"},
        "platform": {"acpi": "1", "apic": "true", "pae": "true", "nx": "true", "viridian": "false"},
        "domain_type": "hvm",
        "actions_after_shutdown": "destroy",
        "actions_after_reboot": "restart",
        "actions_after_crash": "restart",
        "recommendations": RECOMMENDATIONS,
        "other_config": {
            DEFAULT_TEMPLATE_KEY: "true",
            "install-methods": install_methods,
            DISKS_KEY: render(disks),
        },
    }


DEFAULT_TEMPLATES = [
    _template(
        "other-install-media",
        "Other install media",
        "Template which allows VM installation from install media",
        256 * MIB,
        [ProvisionDisk("0", 32 * GIB, "", True, "system")],
        "cdrom",
    ),
]


def is_default(record: dict[str, Any]) -> bool:
    """A built-in template, which xapi refuses to destroy (VM_CANNOT_DELETE_DEFAULT_TEMPLATE)."""
    return bool(record["is_default_template"]) or record["other_config"].get(DEFAULT_TEMPLATE_KEY) == "true"

"""The VM_guest_metrics class: the metrics reported by the guest (as opposed to inferred from outside)."""

from farside.model.roles import Role
from farside.model.schema import RT, RW, ClassDef, F

VM_GUEST_METRICS = ClassDef(
    "VM_guest_metrics",
    "The metrics reported by the guest (as opposed to inferred from outside)",
    fields=[
        F("uuid", "string", RT),
        F("os_version", "(string -> string) map", RT),
        F("PV_drivers_version", "(string -> string) map", RT),
        F("PV_drivers_up_to_date", "bool", RT),
        F("memory", "(string -> string) map", RT),
        F("disks", "(string -> string) map", RT),
        F("networks", "(string -> string) map", RT),
        F("other", "(string -> string) map", RT),
        F("last_updated", "datetime", RT),
        F("other_config", "(string -> string) map", RW, setter=Role.VM_ADMIN),
        F("live", "bool", RT),
        F("can_use_hotplug_vbd", "enum tristate_type", RT, "unspecified"),
        F("can_use_hotplug_vif", "enum tristate_type", RT, "unspecified"),
        F("PV_drivers_detected", "bool", RT),
    ],
)

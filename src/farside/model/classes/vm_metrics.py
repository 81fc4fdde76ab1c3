"""The VM_metrics class: the metrics associated with a VM."""

from farside.model.roles import Role
from farside.model.schema import RT, RW, ClassDef, F

VM_METRICS = ClassDef(
    "VM_metrics",
    "The metrics associated with a VM",
    fields=[
        F("uuid", "string", RT),
        F("memory_actual", "int", RT, persist=False),
        F("VCPUs_number", "int", RT),
        F("VCPUs_utilisation", "(int -> float) map", RT, persist=False),
        F("VCPUs_CPU", "(int -> int) map", RT, persist=False),
        F("VCPUs_params", "(string -> string) map", RT, persist=False),
        F("VCPUs_flags", "(int -> string set) map", RT, persist=False),
        F("state", "string set", RT, persist=False),
        F("start_time", "datetime", RT),
        F("install_time", "datetime", RT),
        F("last_updated", "datetime", RT, persist=False),
        F("other_config", "(string -> string) map", RW, setter=Role.VM_ADMIN, persist=False),
        F("hvm", "bool", RT, persist=False),
        F("nested_virt", "bool", RT, persist=False),
        F("nomigrate", "bool", RT, persist=False),
        F("current_domain_type", "enum domain_type", RT, "unspecified"),
    ],
)

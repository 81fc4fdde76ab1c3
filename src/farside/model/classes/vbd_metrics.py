"""The VBD_metrics class: the metrics associated with a virtual block device."""

from farside.model.roles import Role
from farside.model.schema import RT, RW, ClassDef, F

VBD_METRICS = ClassDef(
    "VBD_metrics",
    "The metrics associated with a virtual block device",
    persistent=False,
    fields=[
        F("uuid", "string", RT),
        F("io_read_kbs", "float", RT),
        F("io_write_kbs", "float", RT),
        F("last_updated", "datetime", RT),
        F("other_config", "(string -> string) map", RW, setter=Role.VM_ADMIN),
    ],
)

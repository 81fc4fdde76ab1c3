"""The VIF_metrics class: the metrics associated with a virtual network device.

No VIF has one (``VIF.metrics`` is null, as on current xapi, which moved these figures into RRDs):
the class answers its getters with xapi's empty answers and HANDLE_INVALID.
"""

from farside.model.roles import Role
from farside.model.schema import RT, RW, ClassDef, F

VIF_METRICS = ClassDef(
    "VIF_metrics",
    "The metrics associated with a virtual network device",
    persistent=False,
    fields=[
        F("uuid", "string", RT),
        F("io_read_kbs", "float", RT),
        F("io_write_kbs", "float", RT),
        F("last_updated", "datetime", RT),
        F("other_config", "(string -> string) map", RW, setter=Role.VM_ADMIN),
    ],
)

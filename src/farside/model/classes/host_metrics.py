"""The host_metrics class: the metrics associated with a host."""

from farside.model.roles import Role
from farside.model.schema import RT, RW, ClassDef, F

HOST_METRICS = ClassDef(
    "host_metrics",
    "The metrics associated with a host",
    fields=[
        F("uuid", "string", RT),
        F("memory_total", "int", RT),
        F("memory_free", "int", RT),
        F("live", "bool", RT),
        F("last_updated", "datetime", RT),
        F("other_config", "(string -> string) map", RW, setter=Role.POOL_OPERATOR),
    ],
)

"""The host_cpu class: a physical CPU."""

from farside.model.roles import Role
from farside.model.schema import RT, RW, ClassDef, F

HOST_CPU = ClassDef(
    "host_cpu",
    "A physical CPU",
    fields=[
        F("uuid", "string", RT),
        F("host", "host ref", RT),
        F("number", "int", RT),
        F("vendor", "string", RT),
        F("speed", "int", RT),
        F("modelname", "string", RT),
        F("family", "int", RT),
        F("model", "int", RT),
        F("stepping", "string", RT),
        F("flags", "string", RT),
        F("features", "string", RT),
        F("utilisation", "float", RT, persist=False),
        F("other_config", "(string -> string) map", RW, setter=Role.POOL_OPERATOR),
    ],
)

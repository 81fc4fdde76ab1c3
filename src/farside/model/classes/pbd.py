"""The PBD class: the physical block devices through which hosts access SRs."""

from farside.model.roles import Role
from farside.model.schema import RO, RT, RW, ClassDef, F, M

PBD = ClassDef(
    "PBD",
    "The physical block devices through which hosts access SRs",
    create=Role.POOL_OPERATOR,
    destroy=Role.POOL_OPERATOR,
    fields=[
        F("uuid", "string", RT),
        F("host", "host ref", RO),
        F("SR", "SR ref", RO),
        F("device_config", "(string -> string) map", RO),
        F("currently_attached", "bool", RT),
        F("other_config", "(string -> string) map", RW, setter=Role.POOL_OPERATOR),
    ],
    messages=[
        M("plug", Role.POOL_OPERATOR, [("self", "PBD ref")], "void"),
        M("unplug", Role.POOL_OPERATOR, [("self", "PBD ref")], "void"),
    ],
)

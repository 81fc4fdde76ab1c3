"""The network class: a virtual network."""

from farside.model.roles import Role
from farside.model.schema import RO, RT, RW, ClassDef, F, M

NETWORK = ClassDef(
    "network",
    "A virtual network",
    create=Role.VM_ADMIN,
    destroy=Role.VM_ADMIN,
    by_name_label=True,
    fields=[
        F("uuid", "string", RT),
        F("name_label", "string", RW, setter=Role.POOL_OPERATOR),
        F("name_description", "string", RW, setter=Role.POOL_OPERATOR),
        F("allowed_operations", "enum network_operations set", RT, persist=False),
        F("current_operations", "(string -> enum network_operations) map", RT, persist=False),
        F("VIFs", "VIF ref set", RT),
        F("PIFs", "PIF ref set", RT),
        F("MTU", "int", RW, 1500, setter=Role.VM_ADMIN),
        F("other_config", "(string -> string) map", RW, setter=Role.POOL_OPERATOR),
        F("bridge", "string", RO),
        F("managed", "bool", RO, True),
        F("blobs", "(string -> blob ref) map", RT),
        F("tags", "string set", RW, setter=Role.VM_OPERATOR),
        F("default_locking_mode", "enum network_default_locking_mode", RT),
        F("assigned_ips", "(VIF ref -> string) map", RT),
        F("purpose", "enum network_purpose set", RT),
    ],
    messages=[
        M("add_purpose", Role.POOL_ADMIN, [("self", "network ref"), ("value", "enum network_purpose")], "void"),
        M("remove_purpose", Role.POOL_ADMIN, [("self", "network ref"), ("value", "enum network_purpose")], "void"),
    ],
)

"""The VMSS class: a VM snapshot schedule (xapi's datamodel_vmss.ml)."""

from farside.model.roles import Role
from farside.model.schema import RO, RT, RW, ClassDef, F, M

VMSS = ClassDef(
    "VMSS",
    "VM Snapshot Schedule",
    create=Role.POOL_OPERATOR,
    destroy=Role.POOL_OPERATOR,
    by_name_label=True,
    fields=[
        F("uuid", "string", RT),
        F("name_label", "string", RW, setter=Role.POOL_OPERATOR),
        F("name_description", "string", RW, setter=Role.POOL_OPERATOR),
        F("enabled", "bool", RW, True, setter=Role.POOL_OPERATOR),
        F("type", "enum vmss_type", RO),
        F("retained_snapshots", "int", RO, 7),
        F("frequency", "enum vmss_frequency", RO),
        F("schedule", "(string -> string) map", RO),
        F("last_run_time", "datetime", RT),
        F("VMs", "VM ref set", RT),
    ],
    messages=[
        M("snapshot_now", Role.POOL_OPERATOR, [("vmss", "VMSS ref")], "string"),
        M("set_retained_snapshots", Role.POOL_OPERATOR, [("self", "VMSS ref"), ("value", "int")], "void"),
        M("set_frequency", Role.POOL_OPERATOR, [("self", "VMSS ref"), ("value", "enum vmss_frequency")], "void"),
        M("set_schedule", Role.POOL_OPERATOR, [("self", "VMSS ref"), ("value", "(string -> string) map")], "void"),
        M(
            "add_to_schedule",
            Role.POOL_OPERATOR,
            [("self", "VMSS ref"), ("key", "string"), ("value", "string")],
            "void",
        ),
        M("remove_from_schedule", Role.POOL_OPERATOR, [("self", "VMSS ref"), ("key", "string")], "void"),
        M("set_type", Role.POOL_OPERATOR, [("self", "VMSS ref"), ("value", "enum vmss_type")], "void"),
    ],
    # set_last_run_time is left out: xapi gives it no role (its scheduler alone calls it), and so
    # does Farside's, in-process.
)

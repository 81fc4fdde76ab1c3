"""The VBD class: a virtual block device."""

from farside.model.roles import Role
from farside.model.schema import RO, RT, RW, ClassDef, F, M

VBD = ClassDef(
    "VBD",
    "A virtual block device",
    create=Role.VM_ADMIN,
    destroy=Role.VM_ADMIN,
    fields=[
        F("uuid", "string", RT),
        F("allowed_operations", "enum vbd_operations set", RT, persist=False),
        F("current_operations", "(string -> enum vbd_operations) map", RT, persist=False),
        F("VM", "VM ref", RO),
        F("VDI", "VDI ref", RO),
        F("device", "string", RO),
        F("userdevice", "string", RW, setter=Role.VM_ADMIN),
        F("bootable", "bool", RW, setter=Role.VM_ADMIN),
        F("mode", "enum vbd_mode", RO),
        F("type", "enum vbd_type", RW, setter=Role.VM_ADMIN),
        F("unpluggable", "bool", RW, True, setter=Role.VM_ADMIN),
        F("storage_lock", "bool", RT),
        F("empty", "bool", RO),
        F("other_config", "(string -> string) map", RW, setter=Role.VM_ADMIN),
        F("currently_attached", "bool", RO),
        F("status_code", "int", RT),
        F("status_detail", "string", RT),
        F("runtime_properties", "(string -> string) map", RT),
        F("qos_algorithm_type", "string", RW, setter=Role.VM_ADMIN),
        F("qos_algorithm_params", "(string -> string) map", RW, setter=Role.VM_ADMIN),
        F("qos_supported_algorithms", "string set", RT),
        F("metrics", "VBD_metrics ref", RT),
    ],
    messages=[
        M("set_mode", Role.VM_ADMIN, [("self", "VBD ref"), ("value", "enum vbd_mode")], "void"),
        M("insert", Role.VM_OPERATOR, [("vbd", "VBD ref"), ("vdi", "VDI ref")], "void"),
        M("eject", Role.VM_OPERATOR, [("vbd", "VBD ref")], "void"),
    ],
)

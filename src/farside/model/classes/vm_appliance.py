"""The VM_appliance class: VM appliance."""

from farside.model.roles import Role
from farside.model.schema import RT, RW, ClassDef, F, M

VM_APPLIANCE = ClassDef(
    "VM_appliance",
    "VM appliance",
    create=Role.POOL_OPERATOR,
    destroy=Role.POOL_OPERATOR,
    by_name_label=True,
    fields=[
        F("uuid", "string", RT),
        F("name_label", "string", RW, setter=Role.POOL_OPERATOR),
        F("name_description", "string", RW, setter=Role.POOL_OPERATOR),
        F("allowed_operations", "enum vm_appliance_operation set", RT, persist=False),
        F("current_operations", "(string -> enum vm_appliance_operation) map", RT, persist=False),
        F("VMs", "VM ref set", RT),
    ],
    messages=[
        M(
            "recover",
            Role.READ_ONLY,
            [("self", "VM_appliance ref"), ("session_to", "session ref"), ("force", "bool")],
            "void",
        ),
        M(
            "assert_can_be_recovered",
            Role.READ_ONLY,
            [("self", "VM_appliance ref"), ("session_to", "session ref")],
            "void",
        ),
        M(
            "get_SRs_required_for_recovery",
            Role.READ_ONLY,
            [("self", "VM_appliance ref"), ("session_to", "session ref")],
            "SR ref set",
        ),
        M("start", Role.POOL_OPERATOR, [("self", "VM_appliance ref"), ("paused", "bool")], "void"),
        M("clean_shutdown", Role.POOL_OPERATOR, [("self", "VM_appliance ref")], "void"),
        M("hard_shutdown", Role.POOL_OPERATOR, [("self", "VM_appliance ref")], "void"),
        M("shutdown", Role.POOL_OPERATOR, [("self", "VM_appliance ref")], "void"),
    ],
)

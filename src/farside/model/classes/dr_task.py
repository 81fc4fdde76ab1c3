"""The DR_task class: DR task."""

from farside.model.roles import Role
from farside.model.schema import RT, ClassDef, F, M

DR_TASK = ClassDef(
    "DR_task",
    "DR task",
    fields=[
        F("uuid", "string", RT),
        F("introduced_SRs", "SR ref set", RT),
    ],
    messages=[
        M(
            "create",
            Role.POOL_OPERATOR,
            [("type", "string"), ("device_config", "(string -> string) map"), ("whitelist", "string set")],
            "DR_task ref",
        ),
        M("destroy", Role.POOL_OPERATOR, [("self", "DR_task ref")], "void"),
    ],
)

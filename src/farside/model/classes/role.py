"""The role class: a set of permissions associated with a subject."""

from farside.model.roles import Role
from farside.model.schema import RO, RT, ClassDef, F, M

ROLE = ClassDef(
    "role",
    "A set of permissions associated with a subject",
    by_name_label=True,
    fields=[
        F("uuid", "string", RT),
        F("name_label", "string", RO),
        F("name_description", "string", RO),
        F("subroles", "role ref set", RO),
        F("is_internal", "bool", RT),
    ],
    messages=[
        M("get_permissions", Role.READ_ONLY, [("self", "role ref")], "role ref set"),
        M("get_permissions_name_label", Role.READ_ONLY, [("self", "role ref")], "string set"),
        M("get_by_permission", Role.READ_ONLY, [("permission", "role ref")], "role ref set"),
        M("get_by_permission_name_label", Role.READ_ONLY, [("label", "string")], "role ref set"),
    ],
)

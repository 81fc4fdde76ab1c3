"""The blob class: a placeholder for a binary blob."""

from farside.model.roles import Role
from farside.model.schema import RO, RT, RW, ClassDef, F

BLOB = ClassDef(
    "blob",
    "A placeholder for a binary blob",
    by_name_label=True,
    fields=[
        F("uuid", "string", RT),
        F("name_label", "string", RW, setter=Role.POOL_OPERATOR),
        F("name_description", "string", RW, setter=Role.POOL_OPERATOR),
        F("size", "int", RT),
        F("public", "bool", RW, setter=Role.POOL_OPERATOR),
        F("last_updated", "datetime", RO),
        F("mime_type", "string", RO),
    ],
)

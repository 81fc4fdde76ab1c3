"""The role class: a set of permissions associated with a subject."""

from farside.model.schema import RO, RT, ClassDef, F

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
)

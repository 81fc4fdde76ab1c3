"""The SM class: a storage manager plugin."""

from farside.model.roles import Role
from farside.model.schema import RT, RW, ClassDef, F

SM = ClassDef(
    "SM",
    "A storage manager plugin",
    by_name_label=True,
    fields=[
        F("uuid", "string", RT),
        F("name_label", "string", RT),
        F("name_description", "string", RT),
        F("type", "string", RT),
        F("vendor", "string", RT),
        F("copyright", "string", RT),
        F("version", "string", RT),
        F("required_api_version", "string", RT),
        F("configuration", "(string -> string) map", RT),
        F("capabilities", "string set", RT),
        F("features", "(string -> int) map", RT),
        F("other_config", "(string -> string) map", RW, setter=Role.POOL_OPERATOR),
        F("driver_filename", "string", RT),
        F("required_cluster_stack", "string set", RT),
    ],
)

"""The SR class: a storage repository."""

from farside.model.roles import Role
from farside.model.schema import RO, RT, RW, ClassDef, F

SR = ClassDef(
    "SR",
    "A storage repository",
    by_name_label=True,
    fields=[
        F("uuid", "string", RT),
        F("name_label", "string", RO),
        F("name_description", "string", RO),
        F("allowed_operations", "enum storage_operations set", RT, persist=False),
        F("current_operations", "(string -> enum storage_operations) map", RT, persist=False),
        F("VDIs", "VDI ref set", RT),
        F("PBDs", "PBD ref set", RT),
        F("virtual_allocation", "int", RT),
        F("physical_utilisation", "int", RT),
        F("physical_size", "int", RO),
        F("type", "string", RO),
        F("content_type", "string", RO),
        F("shared", "bool", RT),
        F("other_config", "(string -> string) map", RW, setter=Role.POOL_OPERATOR),
        F("tags", "string set", RW, setter=Role.VM_OPERATOR),
        F("sm_config", "(string -> string) map", RW, setter=Role.POOL_OPERATOR),
        F("blobs", "(string -> blob ref) map", RT),
        F("local_cache_enabled", "bool", RT),
        F("introduced_by", "DR_task ref", RT),
        F("clustered", "bool", RT),
        F("is_tools_sr", "bool", RT),
    ],
)

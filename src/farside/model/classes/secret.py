"""The secret class: a value (a password an SR or a plugin needs) that only pool-admin may read.

As xapi, every message of the class, getters included, needs pool-admin; secrets have no events
for weaker roles and never reach a metadata VDI (replication/schema.py), which the DR site and
anyone who can read the LUN could read.
"""

from farside.model.roles import Role
from farside.model.schema import RT, RW, ClassDef, F, M

_ADMIN = Role.POOL_ADMIN

SECRET = ClassDef(
    "secret",
    "A secret",
    create=_ADMIN,
    destroy=_ADMIN,
    reader=_ADMIN,
    fields=[
        F("uuid", "string", RT),
        F("value", "string", RW, setter=_ADMIN),
        F("other_config", "(string -> string) map", RW, setter=_ADMIN),
    ],
    messages=[
        M(
            "introduce",
            _ADMIN,
            [("uuid", "string"), ("value", "string"), ("other_config", "(string -> string) map")],
            "secret ref",
        ),
    ],
)

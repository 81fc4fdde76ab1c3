"""The user class: a local user account (xapi's deprecated ``user`` class plus Farside's role).

xapi keeps local accounts outside its database (root only) and external ones as ``subject``s;
Farside keeps its accounts in the pool database so that the six roles can be tested and used
without a directory service. Password hashes live in a separate table that no message reads and
that is never replicated.
"""

from farside.model.schema import RO, RT, RW, ClassDef, F

USER = ClassDef(
    "user",
    "A user of the system (Farside: a local account with an RBAC role)",
    fields=[
        F("uuid", "string", RT),
        F("short_name", "string", RO),
        F("fullname", "string", RW),
        F("other_config", "(string -> string) map", RW),
        F("role", "string", RT, "read-only", farside=True),
    ],
    farside=True,
)

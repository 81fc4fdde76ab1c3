"""The session class: a session."""

from farside.model.roles import Role
from farside.model.schema import RO, RT, RW, ClassDef, F, M

SESSION = ClassDef(
    "session",
    "A session",
    persistent=False,
    fields=[
        F("uuid", "string", RT),
        F("this_host", "host ref", RT),
        F("this_user", "user ref", RT),
        F("last_active", "datetime", RT),
        F("pool", "bool", RT),
        F("other_config", "(string -> string) map", RW, setter=Role.POOL_ADMIN),
        F("is_local_superuser", "bool", RT),
        F("subject", "subject ref", RT),
        F("validation_time", "datetime", RT),
        F("auth_user_sid", "string", RT),
        F("auth_user_name", "string", RT),
        F("rbac_permissions", "string set", RO),
        F("tasks", "task ref set", RT),
        F("parent", "session ref", RO),
        F("originator", "string", RT),
        F("client_certificate", "bool", RT),
    ],
    messages=[
        M(
            "login_with_password",
            Role.READ_ONLY,
            [("uname", "string"), ("pwd", "string"), ("version", "string"), ("originator", "string")],
            "session ref",
        ),
        M("logout", Role.READ_ONLY, [], "void"),
        M("change_password", None, [("old_pwd", "string"), ("new_pwd", "string")], "void"),
        M("get_all_subject_identifiers", Role.READ_ONLY, [], "string set"),
    ],
)

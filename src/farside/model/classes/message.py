"""The message class: an alert for the attention of the administrator (xapi's ``message``).

Messages are kept in the pool database (xapi keeps them on disk), so they outlive a server
restart; they are this site's own log and never reach a metadata VDI. ``seq`` orders them for
the bound on their number (timestamps have whole seconds only).
"""

from farside.model.roles import Role
from farside.model.schema import RT, ClassDef, F, M

_MAP = "(message ref -> message record) map"

MESSAGE = ClassDef(
    "message",
    "An message for the attention of the administrator",
    implicit=False,
    fields=[
        F("uuid", "string", RT),
        F("name", "string", RT),
        F("priority", "int", RT),
        F("cls", "enum cls", RT),
        F("obj_uuid", "string", RT),
        F("timestamp", "datetime", RT),
        F("body", "string", RT),
        F("seq", "int", RT, farside=True, internal=True),
    ],
    messages=[
        M(
            "create",
            Role.POOL_OPERATOR,
            [("name", "string"), ("priority", "int"), ("cls", "enum cls"), ("obj_uuid", "string"), ("body", "string")],
            "message ref",
        ),
        M("destroy", Role.POOL_OPERATOR, [("self", "message ref")], "void"),
        M("destroy_many", Role.POOL_OPERATOR, [("messages", "message ref set")], "void"),
        M(
            "get",
            Role.READ_ONLY,
            [("cls", "enum cls"), ("obj_uuid", "string"), ("since", "datetime")],
            _MAP,
            asynchronous=False,
        ),
        M("get_all", Role.READ_ONLY, [], "message ref set", asynchronous=False),
        M("get_since", Role.READ_ONLY, [("since", "datetime")], _MAP, asynchronous=False),
        M("get_by_uuid", Role.READ_ONLY, [("uuid", "string")], "message ref", asynchronous=False),
        M("get_record", Role.READ_ONLY, [("self", "message ref")], "message record", asynchronous=False),
        M("get_all_records", Role.READ_ONLY, [], _MAP, asynchronous=False),
        M("get_all_records_where", Role.READ_ONLY, [("expr", "string")], _MAP, asynchronous=False),
    ],
)

"""The event class: asynchronous event registration and handling."""

from farside.model.roles import Role
from farside.model.schema import RO, RT, ClassDef, F, M

EVENT = ClassDef(
    "event",
    "Asynchronous event registration and handling",
    persistent=False,
    implicit=False,
    fields=[
        F("snapshot", "<class> record", RT),
        F("id", "int", RO),
        F("timestamp", "datetime", RO),
        F("class", "string", RO),
        F("operation", "enum event_operation", RO),
        F("ref", "string", RO),
        F("obj_uuid", "string", RO),
    ],
    messages=[
        M(
            "from",
            Role.READ_ONLY,
            [("classes", "string set"), ("token", "string"), ("timeout", "float")],
            "an event batch",
        ),
        M("get_current_id", Role.READ_ONLY, [], "int"),
        M("inject", Role.READ_ONLY, [("class", "string"), ("ref", "string")], "string"),
    ],
)

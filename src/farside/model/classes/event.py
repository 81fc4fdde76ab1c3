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
    # xapi has no Async form of the event messages (they are declared without it).
    messages=[
        M(
            "from",
            Role.READ_ONLY,
            [("classes", "string set"), ("token", "string"), ("timeout", "float")],
            "an event batch",
            asynchronous=False,
        ),
        M("register", Role.READ_ONLY, [("classes", "string set")], "void", asynchronous=False),
        M("unregister", Role.READ_ONLY, [("classes", "string set")], "void", asynchronous=False),
        M("next", Role.READ_ONLY, [], "event record set", asynchronous=False),
        M("get_current_id", Role.READ_ONLY, [], "int", asynchronous=False),
        M("inject", Role.READ_ONLY, [("class", "string"), ("ref", "string")], "string", asynchronous=False),
    ],
)

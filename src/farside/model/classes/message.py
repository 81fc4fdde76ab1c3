"""The message class: an message for the attention of the administrator."""

from farside.model.schema import RT, ClassDef, F

MESSAGE = ClassDef(
    "message",
    "An message for the attention of the administrator",
    persistent=False,
    implicit=False,
    fields=[
        F("uuid", "string", RT),
        F("name", "string", RT),
        F("priority", "int", RT),
        F("cls", "enum cls", RT),
        F("obj_uuid", "string", RT),
        F("timestamp", "datetime", RT),
        F("body", "string", RT),
    ],
)

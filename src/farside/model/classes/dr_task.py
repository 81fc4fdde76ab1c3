"""The DR_task class: DR task."""

from farside.model.schema import RT, ClassDef, F

DR_TASK = ClassDef(
    "DR_task",
    "DR task",
    fields=[
        F("uuid", "string", RT),
        F("introduced_SRs", "SR ref set", RT),
    ],
)

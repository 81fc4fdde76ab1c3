"""The task class: a long-running asynchronous task."""

from farside.model.roles import Role
from farside.model.schema import RT, RW, ClassDef, F, M

TASK = ClassDef(
    "task",
    "A long-running asynchronous task",
    by_name_label=True,
    persistent=False,
    fields=[
        F("uuid", "string", RT),
        F("name_label", "string", RT),
        F("name_description", "string", RT),
        F("allowed_operations", "enum task_allowed_operations set", RT),
        F("current_operations", "(string -> enum task_allowed_operations) map", RT),
        F("created", "datetime", RT),
        F("finished", "datetime", RT),
        F("status", "enum task_status_type", RT),
        F("resident_on", "host ref", RT),
        F("progress", "float", RT),
        F("type", "string", RT),
        F("result", "string", RT),
        F("error_info", "string set", RT),
        F("other_config", "(string -> string) map", RW, setter=Role.POOL_OPERATOR),
        F("subtask_of", "task ref", RT),
        F("subtasks", "task ref set", RT),
        # xapi keeps the owning session as an internal field (hidden from records).
        F("session", "session ref", RT, internal=True),
        F("backtrace", "string", RT, "()"),
    ],
    messages=[
        M("create", Role.READ_ONLY, [("label", "string"), ("description", "string")], "task ref"),
        M("destroy", Role.READ_ONLY, [("self", "task ref")], "void"),
        M("cancel", Role.READ_ONLY, [("task", "task ref")], "void"),
        M("set_status", Role.READ_ONLY, [("self", "task ref"), ("value", "enum task_status_type")], "void"),
        M("set_progress", Role.READ_ONLY, [("self", "task ref"), ("value", "float")], "void"),
        M("set_result", Role.READ_ONLY, [("self", "task ref"), ("value", "string")], "void"),
        M("set_error_info", Role.READ_ONLY, [("self", "task ref"), ("value", "string set")], "void"),
    ],
)

"""The console class: a way in to a running VM's console (its serial line, its VNC display).

The server makes a running VM's consoles when it starts and removes them when it stops
(api/consoles.py); ``location`` is a URL of this pool server that needs a session.
"""

from farside.model.roles import Role
from farside.model.schema import RT, RW, ClassDef, F

CONSOLE = ClassDef(
    "console",
    "A console",
    create=Role.VM_ADMIN,
    destroy=Role.VM_ADMIN,
    persistent=False,
    fields=[
        F("uuid", "string", RT),
        F("protocol", "enum console_protocol", RT),
        F("location", "string", RT),
        F("VM", "VM ref", RT),
        F("other_config", "(string -> string) map", RW, setter=Role.VM_ADMIN),
    ],
)

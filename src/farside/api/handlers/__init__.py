"""One module a class, each registering the handlers of that class's hand-written messages.

Importing this package registers them all.
"""

from farside.api.handlers import (
    dr_run,
    dr_task,
    event,
    message,
    network,
    pbd,
    pool,
    recover,
    session,
    sr,
    task,
    vbd,
    vbd_media,
    vdi,
    vif,
    vm,
    vm_appliance,
    vm_clone,
)

__all__ = [
    "dr_run",
    "dr_task",
    "event",
    "message",
    "network",
    "pbd",
    "pool",
    "recover",
    "session",
    "sr",
    "task",
    "vbd",
    "vbd_media",
    "vdi",
    "vif",
    "vm",
    "vm_appliance",
    "vm_clone",
]

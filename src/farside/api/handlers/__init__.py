"""One module a class, each registering the handlers of that class's hand-written messages.

Importing this package registers them all.
"""

from farside.api.handlers import (
    dr_run,
    dr_task,
    event,
    host_info,
    message,
    network,
    pbd,
    pool,
    pool_coordinator,
    pool_settings,
    recover,
    role,
    session,
    sr,
    task,
    vbd,
    vdi,
    vif,
    vm,
    vm_appliance,
    vm_boot,
    vm_placement,
)

__all__ = [
    "dr_run",
    "dr_task",
    "event",
    "host_info",
    "message",
    "network",
    "pbd",
    "pool",
    "pool_coordinator",
    "pool_settings",
    "recover",
    "role",
    "session",
    "sr",
    "task",
    "vbd",
    "vdi",
    "vif",
    "vm",
    "vm_appliance",
    "vm_boot",
    "vm_placement",
]

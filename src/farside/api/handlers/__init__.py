"""One module a class, each registering the handlers of that class's hand-written messages.

Importing this package registers them all.
"""

from farside.api.handlers import event, network, pbd, session, sr, task, vbd, vdi, vif, vm, vm_appliance

__all__ = ["event", "network", "pbd", "session", "sr", "task", "vbd", "vdi", "vif", "vm", "vm_appliance"]

"""One module a class, each registering the handlers of that class's hand-written messages.

Importing this package registers them all.
"""

from farside.api.handlers import event, network, session, task, vm, vm_appliance

__all__ = ["event", "network", "session", "task", "vm", "vm_appliance"]

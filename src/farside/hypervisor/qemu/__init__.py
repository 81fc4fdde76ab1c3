"""The QEMU driver: ``argv`` (command lines), ``process`` (processes, run directories),
``qmp`` (the event loop and per-VM monitors), ``domain`` (one VM), ``driver`` (the façade)."""

from farside.hypervisor.qemu.driver import QemuDriver

__all__ = ["QemuDriver"]

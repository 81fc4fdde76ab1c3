"""The hypervisor layer: the host machine's facts (``host``), the driver contract (``driver``) and
its QEMU implementation (``qemu``)."""

"""The hypervisor layer: the host machine's facts now; the QEMU driver comes with real VMs."""

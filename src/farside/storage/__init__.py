"""The storage layer: file SRs whose LUN is a directory, VDI images made with qemu-img, LUN leases."""

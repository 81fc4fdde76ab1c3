"""What a pool needs to know about the machine its host runs on; filled in by the hypervisor layer."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CPU:
    number: int
    vendor: str
    model_name: str
    family: str
    model: str
    stepping: str
    speed_mhz: int
    flags: str


@dataclass(frozen=True)
class HostFacts:
    hostname: str
    address: str
    memory_total: int  # bytes
    memory_free: int  # bytes
    cpus: list[CPU] = field(default_factory=list)
    sockets: int = 1
    kernel: str = ""
    machine: str = ""


@dataclass(frozen=True)
class Interface:
    """One of the host's network interfaces as the kernel reports it (a PIF's source)."""

    device: str
    mac: str
    mtu: int
    physical: bool  # backed by a device (a NIC), not a bridge, tap, veth or loopback
    up: bool
    ipv4: str = ""
    netmask: str = ""
    gateway: str = ""
    ipv6: tuple[str, ...] = ()  # address/prefix, global scope
    default_route: bool = False  # the device of the host's IPv4 default route

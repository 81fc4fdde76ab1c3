"""Reading the host's network interfaces from the kernel (/sys/class/net, /proc/net), for PIFs.

Read only: Farside never configures the host's network (its own tools do). IPv4 addresses come
from the SIOCGIFADDR/SIOCGIFNETMASK ioctls, which need no privilege and no subprocess.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from pathlib import Path

from farside.model.host_facts import Interface

SYS_NET = Path("/sys/class/net")
_SIOCGIFADDR = 0x8915
_SIOCGIFNETMASK = 0x891B


def interfaces(sys_net: Path = SYS_NET, proc_net: Path = Path("/proc/net")) -> list[Interface]:
    """Every interface but loopback, sorted by name."""
    routes = _default_routes(proc_net / "route")
    ipv6 = _ipv6(proc_net / "if_inet6")
    found = []
    for path in sorted(sys_net.iterdir()) if sys_net.is_dir() else []:
        device = path.name
        if device == "lo":
            continue
        ipv4, netmask = _ipv4(device)
        found.append(
            Interface(
                device=device,
                mac=_read(path / "address"),
                mtu=int(_read(path / "mtu") or 0),
                physical=(path / "device").exists(),
                up=_read(path / "operstate") in ("up", "unknown"),
                ipv4=ipv4,
                netmask=netmask,
                gateway=routes.get(device, ""),
                ipv6=tuple(ipv6.get(device, ())),
                default_route=device in routes,
            )
        )
    return found


def nameservers(resolv: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The host's DNS servers, in its resolver's order."""
    try:
        lines = resolv.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [w[1] for w in (line.split() for line in lines) if len(w) >= 2 and w[0] == "nameserver"]


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _ipv4(device: str) -> tuple[str, str]:
    name = struct.pack("256s", device.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            address = socket.inet_ntoa(fcntl.ioctl(s.fileno(), _SIOCGIFADDR, name)[20:24])
            netmask = socket.inet_ntoa(fcntl.ioctl(s.fileno(), _SIOCGIFNETMASK, name)[20:24])
        except OSError:  # no IPv4 address
            return "", ""
    return address, netmask


def _default_routes(path: Path) -> dict[str, str]:
    """device -> gateway of each IPv4 default route (/proc/net/route: little-endian hex)."""
    routes: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return routes
    for line in lines:
        cols = line.split()
        if len(cols) >= 3 and cols[1] == "00000000":
            routes.setdefault(cols[0], socket.inet_ntoa(struct.pack("<I", int(cols[2], 16))))
    return routes


def _ipv6(path: Path) -> dict[str, list[str]]:
    """device -> global addresses as address/prefix (/proc/net/if_inet6; scope 00 is global)."""
    found: dict[str, list[str]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        cols = line.split()
        if len(cols) == 6 and cols[3] == "00":
            address = ipaddress.IPv6Address(bytes.fromhex(cols[0]))
            found.setdefault(cols[5], []).append(f"{address}/{int(cols[2], 16)}")
    return found

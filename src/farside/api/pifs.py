"""The host's PIFs kept in step with its real interfaces (PIF.scan, and at every server start).

The PIFs are the host's physical NICs plus its management interface (the one carrying the host's
address, else the one of its default route), which sits on the pool's default network, as
xapi's management PIF does. Each other NIC gets a network of its own, as xapi's PIF.scan makes
(``Pool-wide network associated with eth1``). A PIF whose interface is gone is kept, detached
(``currently_attached=false``), as xapi keeps a PIF whose NIC was removed; ``PIF.forget`` drops it.
"""

from __future__ import annotations

from typing import Any

from farside.db import Transaction
from farside.hypervisor import netif
from farside.model.host_facts import Interface

DEFAULT_BRIDGE = "xenbr0"  # the bridge name of the default network (db/bootstrap.py)


def scan(tx: Transaction, host: str) -> None:
    """Add or update the PIFs of ``host`` from the kernel's view of its interfaces."""
    sync(tx, host, netif.interfaces(), netif.nameservers())


def management_device(found: list[Interface], address: str) -> str | None:
    """The interface carrying ``address``, else the default route's, else the first NIC."""
    for pick in (
        [i for i in found if i.ipv4 == address],
        [i for i in found if i.default_route],
        [i for i in found if i.physical],
    ):
        if pick:
            return pick[0].device
    return None


def sync(tx: Transaction, host: str, found: list[Interface], dns: list[str]) -> None:
    management = management_device(found, tx.get_field("host", host, "address"))
    existing = {tx.get_field("PIF", ref, "device"): ref for ref in tx.get_field("host", host, "PIFs")}
    present = set()
    for iface in found:
        if not (iface.physical or iface.device == management):
            continue
        present.add(iface.device)
        values = _fields(iface, dns if iface.device == management else [], iface.device == management)
        ref = existing.get(iface.device)
        if ref is None:
            network = _default_network(tx) if iface.device == management else _network_for(tx, iface.device)
            tx.create("PIF", {**values, "device": iface.device, "host": host, "network": network, "managed": False})
        else:
            tx.set_fields("PIF", ref, values)
    for device, ref in existing.items():
        if device not in present:
            tx.set_fields("PIF", ref, {"currently_attached": False, "management": False})


def _fields(iface: Interface, dns: list[str], management: bool) -> dict[str, Any]:
    return {
        "MAC": iface.mac,
        "MTU": iface.mtu,
        "VLAN": -1,
        "physical": iface.physical,
        "currently_attached": iface.up,
        # The kernel does not say whether an address came from DHCP: an address is reported as set.
        "ip_configuration_mode": "Static" if iface.ipv4 else "None",
        "IP": iface.ipv4,
        "netmask": iface.netmask,
        "gateway": iface.gateway,
        "DNS": ",".join(dns),
        "ipv6_configuration_mode": "Static" if iface.ipv6 else "None",
        "IPv6": list(iface.ipv6),
        "management": management,
        "disallow_unplug": management,
    }


def _default_network(tx: Transaction) -> str:
    found = tx.find("network", "bridge", DEFAULT_BRIDGE)
    return found[0] if found else _network_for(tx, "default")


def _network_for(tx: Transaction, device: str) -> str:
    label = f"Pool-wide network associated with {device}"
    found = tx.find("network", "name_label", label)
    if found:
        return found[0]
    taken = {tx.get_field("network", r, "bridge") for r in tx.refs("network")}
    bridge = next(f"xenbr{i}" for i in range(len(taken) + 1) if f"xenbr{i}" not in taken)
    return tx.create("network", {"name_label": label, "bridge": bridge, "MTU": 1500})

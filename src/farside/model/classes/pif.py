"""The PIF class: one of the host's own network interfaces, as the host reports it.

Farside reads interfaces from the host and never configures them (the host's own tools do), so
every PIF is ``managed=false``, which is how xapi marks an interface it does not manage: its IP
fields are the host's, read-only, and the messages that would change them answer PIF_UNMANAGED.
"""

from farside.model.roles import Role
from farside.model.schema import RO, RT, RW, ClassDef, F, M

_OP = Role.POOL_OPERATOR
_PIF = [("self", "PIF ref")]

PIF = ClassDef(
    "PIF",
    "A physical network interface (note separate VLANs are represented as several PIFs)",
    fields=[
        F("uuid", "string", RT),
        F("device", "string", RO),
        F("network", "network ref", RO),
        F("host", "host ref", RO),
        F("MAC", "string", RO),
        F("MTU", "int", RO),
        F("VLAN", "int", RO, -1),
        F("metrics", "PIF_metrics ref", RT),
        F("physical", "bool", RT),
        F("currently_attached", "bool", RT, True),
        F("ip_configuration_mode", "enum ip_configuration_mode", RT, "None"),
        F("IP", "string", RT),
        F("netmask", "string", RT),
        F("gateway", "string", RT),
        F("DNS", "string", RT),
        F("bond_slave_of", "Bond ref", RT),
        F("bond_master_of", "Bond ref set", RT),
        F("VLAN_master_of", "VLAN ref", RT),
        F("VLAN_slave_of", "VLAN ref set", RT),
        F("management", "bool", RT),
        F("other_config", "(string -> string) map", RW, setter=_OP),
        F("disallow_unplug", "bool", RT),
        F("tunnel_access_PIF_of", "tunnel ref set", RT),
        F("tunnel_transport_PIF_of", "tunnel ref set", RT),
        F("ipv6_configuration_mode", "enum ipv6_configuration_mode", RT, "None"),
        F("IPv6", "string set", RT),
        F("ipv6_gateway", "string", RT),
        F("primary_address_type", "enum primary_address_type", RT, "IPv4"),
        F("managed", "bool", RO, True),
        F("properties", "(string -> string) map", RT),
        F("capabilities", "string set", RT),
        F("igmp_snooping_status", "enum pif_igmp_status", RT, "unknown"),
        F("sriov_physical_PIF_of", "network_sriov ref set", RT),
        F("sriov_logical_PIF_of", "network_sriov ref set", RT),
        F("PCI", "PCI ref", RT),
    ],
    messages=[
        M("scan", _OP, [("host", "host ref")], "void"),
        M(
            "reconfigure_ip",
            _OP,
            [
                *_PIF,
                ("mode", "enum ip_configuration_mode"),
                ("IP", "string"),
                ("netmask", "string"),
                ("gateway", "string"),
                ("DNS", "string"),
            ],
            "void",
        ),
        M(
            "reconfigure_ipv6",
            _OP,
            [
                *_PIF,
                ("mode", "enum ipv6_configuration_mode"),
                ("IPv6", "string"),
                ("gateway", "string"),
                ("DNS", "string"),
            ],
            "void",
        ),
        M("plug", _OP, _PIF, "void"),
        M("unplug", _OP, _PIF, "void"),
        M("forget", _OP, _PIF, "void"),
    ],
)

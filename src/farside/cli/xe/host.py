"""xe's commands over the host's own objects: its PIFs, the pool's messages, VM consoles and
host plugins, with xe's field names and default columns (xapi's cli records.ml)."""

from __future__ import annotations

from farside.cli.xe.command import Command, Context, list_command, param_get_command, param_list_command
from farside.cli.xe.fields import flag, mapping, plain, ref, ref_name, refs, strings
from farside.cli.xe.records import View

PIF = View(
    "pif",
    "PIF",
    [
        plain("uuid", "uuid"),
        plain("device", "device"),
        plain("MAC", "MAC"),
        flag("physical", "physical"),
        flag("managed", "managed"),
        flag("currently-attached", "currently_attached"),
        plain("MTU", "MTU"),
        plain("VLAN", "VLAN"),
        refs("bond-master-of", "bond_master_of", "Bond"),
        ref("bond-slave-of", "bond_slave_of", "Bond"),
        refs("tunnel-access-PIF-of", "tunnel_access_PIF_of", "tunnel"),
        refs("tunnel-transport-PIF-of", "tunnel_transport_PIF_of", "tunnel"),
        flag("management", "management"),
        ref("network-uuid", "network", "network"),
        ref_name("network-name-label", "network", "network"),
        ref("host-uuid", "host", "host"),
        ref_name("host-name-label", "host", "host"),
        plain("IP-configuration-mode", "ip_configuration_mode"),
        plain("IP", "IP"),
        plain("netmask", "netmask"),
        plain("gateway", "gateway"),
        plain("IPv6-configuration-mode", "ipv6_configuration_mode"),
        strings("IPv6", "IPv6"),
        plain("IPv6-gateway", "ipv6_gateway"),
        plain("primary-address-type", "primary_address_type"),
        plain("DNS", "DNS"),
        mapping("properties", "properties"),
        strings("capabilities", "capabilities"),
        flag("disallow-unplug", "disallow_unplug"),
        mapping("other-config", "other_config", writable=True),
        plain("igmp-snooping-status", "igmp_snooping_status"),
    ],
    list_params=("uuid", "device", "currently-attached", "VLAN", "network-uuid"),
)

MESSAGE = View(
    "message",
    "message",
    [
        plain("uuid", "uuid"),
        plain("name", "name"),
        plain("priority", "priority"),
        plain("class", "cls"),
        plain("obj-uuid", "obj_uuid"),
        plain("timestamp", "timestamp"),
        plain("body", "body"),
    ],
)

CONSOLE = View(
    "console",
    "console",
    [
        plain("uuid", "uuid"),
        ref("vm-uuid", "VM", "VM"),
        ref_name("vm-name-label", "VM", "VM"),
        plain("protocol", "protocol"),
        plain("location", "location"),
        mapping("other-config", "other_config", writable=True),
    ],
)


def call_plugin(ctx: Context) -> None:
    host = ctx.call("host.get_by_uuid", ctx.params["host-uuid"])
    args = ctx.params.prefixed("args")
    ctx.printer.values([str(ctx.call("host.call_plugin", host, ctx.params["plugin"], ctx.params["fn"], args))])


COMMANDS = [
    list_command(PIF),
    param_list_command(PIF),
    param_get_command(PIF),
    list_command(MESSAGE),
    list_command(CONSOLE),
    Command(
        "host-call-plugin",
        call_plugin,
        reqd=("host-uuid", "plugin", "fn"),
        optn=("args:",),
        help="Call a function of a host plugin; prints its result.",
    ),
]

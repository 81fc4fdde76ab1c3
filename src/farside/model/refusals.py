"""The XenAPI messages Farside answers with xapi's own error instead of behaviour, and why.

Every message of xapi's datamodel answers: implemented (declared on its class), or listed here
with the error xapi gives in the same situation. A refusal still goes through xapi's checks first
(parameter count, session, role), so a read-only caller of a write message is told
``RBAC_PERMISSION_DENIED`` as xapi tells it. The failure is the group's code, its parameters
(``{message}`` is the message's wire name, ``{0}`` the first argument after the session,
``{0.SR}`` the ``SR`` field of the object that argument names) and, last, the group's reason.

Groups marked ``owned`` are built by another issue in progress: their entries go as their
handlers land (tests/unit/model/test_refusals.py fails while a message is both declared and refused).
docs/api.md's list of refused messages is generated from this table (``markdown``;
``pytest tests/unit/model --regenerate-docs`` rewrites it).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from farside.model.roles import Role

RO, VO, VA = Role.READ_ONLY, Role.VM_OPERATOR, Role.VM_ADMIN
VPA, PO, PA = Role.VM_POWER_ADMIN, Role.POOL_OPERATOR, Role.POOL_ADMIN

# Messages a client calls before it has a session (as session.login_with_password).
SESSIONLESS = frozenset({"session.slave_local_login_with_password"})


@dataclass(frozen=True)
class Group:
    """Messages refused alike: xapi's error ``code`` with ``params``, and a one-line ``reason``.

    ``messages`` maps each wire name to the weakest role xapi allows it (None: xapi names none)
    and its parameter count after the session.
    """

    title: str
    code: str
    params: tuple[str, ...]
    reason: str
    messages: dict[str, tuple[Role | None, int]]
    owned: bool = False


@dataclass(frozen=True)
class Refusal:
    """One refused message, with the group that says how."""

    wire_name: str
    role: Role | None
    arity: int
    group: Group

    @property
    def sessionless(self) -> bool:
        return self.wire_name in SESSIONLESS


GROUPS: tuple[Group, ...] = (
    Group(
        "Snapshots, clones, copies, provisioning and import",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "Owned by the backup issue, in progress; its handlers replace these entries.",
        {
            "VM.snapshot_with_quiesce": (VPA, 2),
            "VM.import": (PO, 4),
        },
        owned=True,
    ),
    Group(
        "Device hot-plug and CD media",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "Owned by issue #15 part 3 (templates, CD drives), in progress.",
        {
            "VBD.plug": (VA, 1),
            "VBD.unplug": (VA, 1),
            "VBD.unplug_force": (VA, 1),
            "VIF.plug": (VA, 1),
            "VIF.unplug": (VA, 1),
            "VIF.unplug_force": (VA, 1),
        },
        owned=True,
    ),
    Group(
        "Data sources and RRDs",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "Owned by issue #15 part 5 (metrics), in progress.",
        {
            "SR.get_data_sources": (RO, 1),
            "SR.record_data_source": (PO, 2),
            "SR.query_data_source": (RO, 2),
            "SR.forget_data_source_archives": (PO, 2),
            "host.backup_rrds": (PA, 2),
        },
        owned=True,
    ),
    Group(
        "Host objects, evacuation, plugins, subjects",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "Owned by issue #15 part 4 (host and network objects), in progress.",
        {
            "host.assert_can_evacuate": (PO, 1),
            "host.get_uncooperative_resident_VMs": (RO, 1),
            "host.get_management_interface": (PO, 1),
        },
        owned=True,
    ),
    Group(
        "Classes PIF, console and VMSS",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "Whole classes owned by issue #15 part 4 (PIF, console) and the snapshots issue (VMSS), in progress.",
        {
            "VMSS.set_last_run_time": (None, 2),
            "PIF.set_property": (PO, 3),
            "PIF.db_forget": (PO, 1),
            "PIF.db_introduce": (PO, 23),
            "PIF.set_disallow_unplug": (PO, 2),
            "PIF.introduce": (PO, 4),
            "PIF.set_primary_address_type": (PO, 2),
            "PIF.destroy": (PO, 1),
            "PIF.create_VLAN": (PO, 4),
        },
        owned=True,
    ),
    Group(
        "High availability",
        "LICENCE_RESTRICTION",
        ("HA",),
        "A Farside pool is one host; LUN leases and the fencing watchdog keep one writer per disk.",
        {
            "pool.enable_ha": (PO, 2),
            "pool.set_ha_host_failures_to_tolerate": (PO, 2),
            "pool.ha_compute_vm_failover_plan": (PO, 2),
            "pool.ha_compute_hypothetical_max_host_failures_to_tolerate": (RO, 1),
            "pool.ha_compute_max_host_failures_to_tolerate": (PO, 0),
            "pool.ha_failover_plan_exists": (PO, 1),
            "VM.set_ha_always_run": (PO, 2),
            "VM.assert_agile": (RO, 1),
            "SR.assert_can_host_ha_statefile": (PO, 1),
        },
    ),
    Group(
        "High availability, when it would have to be on",
        "HA_NOT_ENABLED",
        (),
        "HA is never enabled on a Farside pool (see the group above).",
        {
            "pool.disable_ha": (PO, 0),
            "pool.ha_prevent_restarts_for": (PO, 1),
            "host.emergency_ha_disable": (PO, 1),
        },
    ),
    Group(
        "Workload balancing",
        "WLB_NOT_INITIALIZED",
        (),
        "No WLB server is or can be configured: a one-host pool has nothing to balance.",
        {
            "pool.retrieve_wlb_recommendations": (RO, 0),
            "pool.retrieve_wlb_configuration": (RO, 0),
            "pool.send_wlb_configuration": (PO, 1),
            "pool.deconfigure_wlb": (PO, 0),
            "VM.retrieve_wlb_recommendations": (RO, 1),
            "host.retrieve_wlb_evacuate_recommendations": (RO, 1),
        },
    ),
    Group(
        "Workload balancing set-up",
        "LICENCE_RESTRICTION",
        ("WLB",),
        "Farside has no WLB client; a one-host pool has nothing to balance.",
        {
            "pool.initialize_wlb": (PO, 5),
            "pool.send_test_post": (PA, 3),
        },
    ),
    Group(
        "External authentication",
        "AUTH_UNKNOWN_TYPE",
        ("{3}",),
        "Farside authenticates only its own users (farside user ...); no AD or PAM back-end.",
        {
            "pool.enable_external_auth": (PA, 4),
            "host.enable_external_auth": (PA, 4),
        },
    ),
    Group(
        "External authentication, when it would have to be on",
        "AUTH_IS_DISABLED",
        (),
        "External authentication is never enabled on a Farside pool.",
        {
            "pool.disable_external_auth": (PA, 2),
            "session.logout_subject_identifier": (PO, 1),
            "host.disable_external_auth": (PA, 2),
        },
    ),
    Group(
        "Editions",
        "INVALID_EDITION",
        ("{1}",),
        "Farside has one edition and no licensing; pool.get_license_state tells it.",
        {
            "pool.apply_edition": (PO, 2),
            "host.apply_edition": (PO, 3),
        },
    ),
    Group(
        "Licence files",
        "LICENSE_PROCESSING_ERROR",
        (),
        "Farside has no licences to add, apply or remove.",
        {
            "host.license_add": (PO, 2),
            "host.license_apply": (PO, 2),
            "host.license_remove": (PO, 1),
        },
    ),
    Group(
        "Updates and repositories",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "Farside is updated as a Python package by the host's own tools, not from yum repositories through XenAPI.",
        {
            "pool.set_update_sync_enabled": (PO, 2),
            "pool.configure_update_sync": (PO, 3),
            "pool.check_update_readiness": (PO, 2),
            "pool.sync_updates": (PO, 4),
            "pool.add_repository": (PO, 2),
            "pool.remove_repository": (PO, 2),
            "pool.set_repositories": (PO, 2),
            "pool.configure_repository_proxy": (PO, 4),
            "pool.disable_repository_proxy": (PO, 1),
            "host.apply_updates": (PO, 2),
            "host.apply_recommended_guidances": (PO, 1),
            "host.emergency_clear_mandatory_guidance": (None, 0),
            "host.refresh_pack_info": (PO, 1),
        },
    ),
    Group(
        "Certificates and TLS",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "TLS is set when the server starts (farside server --tls); no TLS between pool hosts.",
        {
            "pool.certificate_install": (PO, 2),
            "pool.certificate_uninstall": (PO, 1),
            "pool.certificate_list": (PO, 0),
            "pool.certificate_sync": (PO, 0),
            "pool.crl_install": (PO, 2),
            "pool.crl_uninstall": (PO, 1),
            "pool.crl_list": (PO, 0),
            "pool.install_ca_certificate": (PO, 2),
            "pool.uninstall_ca_certificate": (PO, 1),
            "pool.enable_tls_verification": (PA, 0),
            "pool.enable_client_certificate_auth": (PO, 2),
            "pool.disable_client_certificate_auth": (PO, 1),
            "pool.set_https_only": (PO, 2),
            "host.set_https_only": (PO, 2),
            "pool.enable_ssl_legacy": (PO, 1),
            "pool.disable_ssl_legacy": (PO, 1),
            "host.set_ssl_legacy": (PO, 2),
            "host.install_server_certificate": (PA, 4),
            "host.refresh_server_certificate": (PA, 1),
            "host.reset_server_certificate": (PA, 1),
            "host.emergency_reset_server_certificate": (None, 0),
            "host.emergency_disable_tls_verification": (None, 0),
            "host.emergency_reenable_tls_verification": (None, 0),
            "pool.rotate_secret": (PA, 0),
        },
    ),
    Group(
        "UEFI Secure Boot certificates",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "Farside VMs boot with SeaBIOS; there is no UEFI variable store to hold certificates.",
        {
            "pool.set_uefi_certificates": (PA, 2),
            "pool.set_custom_uefi_certificates": (PA, 2),
            "host.set_uefi_certificates": (None, 2),
        },
    ),
    Group(
        "Telemetry",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "Farside sends no telemetry.",
        {
            "pool.reset_telemetry_uuid": (PA, 1),
            "pool.set_telemetry_next_collection": (PA, 2),
        },
    ),
    Group(
        "Pool membership and coordinator changes",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "A Farside pool is one host: no supporters, no emergency mode; pools pair for DR, never join.",
        {
            "pool.join": (PO, 3),
            "pool.join_force": (PO, 3),
            "pool.eject": (PO, 1),
            "pool.emergency_reset_master": (PO, 1),
            "pool.emergency_transition_to_master": (PO, 0),
            "session.slave_local_login_with_password": (PA, 2),
            "session.local_logout": (PA, 0),
            "host.declare_dead": (PO, 1),
        },
    ),
    Group(
        "Redo log",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "Farside writes the pool's metadata to metadata VDIs (SR.enable_database_replication) instead.",
        {
            "pool.enable_redo_log": (PO, 1),
            "pool.disable_redo_log": (PO, 0),
        },
    ),
    Group(
        "Sessions on a database file",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "A foreign pool's database opens from its metadata VDI, with VDI.open_database.",
        {
            "session.create_from_db_file": (None, 1),
        },
    ),
    Group(
        "Removing the host",
        "HOST_CANNOT_DESTROY_SELF",
        ("{0}",),
        "A Farside pool's only host is its coordinator.",
        {
            "host.destroy": (PO, 1),
        },
    ),
    Group(
        "Managing the host machine",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "Farside does not own its host: power, logs, network and kernel are the OS's to manage.",
        {
            "host.shutdown": (PO, 1),
            "host.reboot": (PO, 1),
            "host.power_on": (PO, 1),
            "host.set_power_on_mode": (PO, 3),
            "host.shutdown_agent": (PO, 0),
            "host.restart_agent": (PO, 1),
            "host.bugreport_upload": (PO, 3),
            "host.send_debug_keys": (PA, 2),
            "host.get_log": (RO, 1),
            "host.dmesg": (PO, 1),
            "host.dmesg_clear": (PO, 1),
            "host.syslog_reconfigure": (PO, 1),
            "host.set_hostname_live": (PO, 2),
            "host.management_reconfigure": (PO, 1),
            "host.management_disable": (PO, 0),
            "host.local_management_reconfigure": (PO, 1),
            "pool.management_reconfigure": (PO, 1),
            "host.sync_data": (PA, 1),
            "host.set_cpu_features": (PO, 2),
            "host.reset_cpu_features": (PO, 1),
            "host.get_sched_gran": (None, 1),
            "host.set_sched_gran": (None, 2),
            "host.set_numa_affinity_policy": (PA, 2),
            "host.set_multipathing": (PO, 2),
            "host.set_iscsi_iqn": (PO, 2),
            "host.enable_display": (PO, 1),
            "host.disable_display": (PO, 1),
            "host.call_extension": (PA, 2),
            "pool.test_archive_target": (PO, 2),
        },
    ),
    Group(
        "Local storage caching",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "File SRs are read and written in place; there is no local cache SR.",
        {
            "pool.enable_local_storage_caching": (PO, 1),
            "pool.disable_local_storage_caching": (PO, 1),
            "host.enable_local_storage_caching": (PO, 2),
            "host.disable_local_storage_caching": (PO, 1),
        },
    ),
    Group(
        "Virtual switch features",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "VIFs are QEMU NICs with no virtual switch: no VLANs, bonds, locking, IP filters or NBD network purposes.",
        {
            "pool.create_VLAN": (PO, 3),
            "pool.create_VLAN_from_PIF": (PO, 3),
            "pool.set_vswitch_controller": (PO, 1),
            "pool.set_igmp_snooping_enabled": (PO, 2),
            "network.set_default_locking_mode": (PO, 2),
            "VIF.set_locking_mode": (PO, 2),
            "VIF.set_ipv4_allowed": (PO, 2),
            "VIF.add_ipv4_allowed": (PO, 2),
            "VIF.remove_ipv4_allowed": (PO, 2),
            "VIF.set_ipv6_allowed": (PO, 2),
            "VIF.add_ipv6_allowed": (PO, 2),
            "VIF.remove_ipv6_allowed": (PO, 2),
            "VIF.configure_ipv4": (VO, 4),
            "VIF.configure_ipv6": (VO, 4),
        },
    ),
    Group(
        "Disk features file SRs do not have",
        "SR_OPERATION_NOT_SUPPORTED",
        ("{0.SR}",),
        "File SRs have no changed-block tracking or online resize (their capabilities list says so).",
        {
            "VDI.enable_cbt": (VA, 1),
            "VDI.disable_cbt": (VA, 1),
            "VDI.list_changed_blocks": (VO, 2),
            "VDI.data_destroy": (VA, 1),
            "VDI.resize_online": (VA, 2),
        },
    ),
    Group(
        "SR sizes and sharing",
        "SR_OPERATION_NOT_SUPPORTED",
        ("{0}",),
        "Farside measures a file SR's size on its LUN itself, and every file SR is shared.",
        {
            "SR.set_physical_size": (PO, 2),
            "SR.set_shared": (PO, 2),
        },
    ),
    Group(
        "Introducing VDIs",
        "SR_OPERATION_NOT_SUPPORTED",
        ("{3}",),
        "A file SR finds its VDIs itself from the records on its LUN (SR.scan).",
        {
            "VDI.introduce": (VA, 18),
        },
    ),
    Group(
        "Other storage messages",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "A file SR's LUN is fixed at SR.create; disks move between pools by the mirror.",
        {
            "SR.make": (PO, 8),
            "SR.probe_ext": (PO, 4),
            "PBD.set_device_config": (PO, 2),
            "VDI.pool_migrate": (VPA, 3),
        },
    ),
    Group(
        "Live changes to a running VM",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "QEMU VMs here have no balloon or vCPU hot-plug; change memory and vCPUs while the VM is halted.",
        {
            "VM.set_VCPUs_number_live": (VA, 2),
            "VM.add_to_VCPUs_params_live": (VA, 3),
            "VM.set_memory_target_live": (VPA, 2),
            "VM.wait_memory_target_live": (RO, 1),
            "VM.set_shadow_multiplier_live": (VPA, 2),
            "VM.restart_device_models": (VPA, 1),
        },
    ),
    Group(
        "Guest agent and guest requests",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "Farside's guests run no xapi guest agent; there is no channel for plugins, services, SysRq or triggers.",
        {
            "VM.call_plugin": (VO, 4),
            "VM.query_services": (PA, 1),
            "VM.send_sysrq": (PA, 2),
            "VM.send_trigger": (PA, 2),
            "VM.import_convert": (VA, 5),
        },
    ),
    Group(
        "Removed by xapi",
        "MESSAGE_REMOVED",
        (),
        "xapi removed VM protection policies (VMPP); so does Farside.",
        {
            "VM.set_protection_policy": (PO, 2),
        },
    ),
    Group(
        "Blobs",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "Farside has no blob store: /blob is not served.",
        {
            "pool.create_new_blob": (PO, 4),
            "VM.create_new_blob": (VPA, 4),
            "host.create_new_blob": (PO, 4),
            "network.create_new_blob": (PO, 4),
            "SR.create_new_blob": (PO, 4),
            "blob.create": (PO, 2),
            "blob.destroy": (PO, 1),
        },
    ),
    Group(
        "BIOS strings",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "QEMU's SMBIOS tables here are its defaults; bios_strings would reach no guest.",
        {
            "VM.set_bios_strings": (VA, 2),
            "VM.copy_bios_strings": (VA, 2),
        },
    ),
    Group(
        "Suspend images",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "A VM's suspend image is the server's own: written by VM.suspend, dropped by resume or shutdown.",
        {
            "VM.set_suspend_VDI": (PO, 2),
        },
    ),
    Group(
        "Debugging checks",
        "NOT_IMPLEMENTED",
        ("{message}",),
        "VM.assert_can_boot_here checks every disk of a VM as VM.start will.",
        {
            "VBD.assert_attachable": (VA, 1),
        },
    ),
)

_TEMPLATE = re.compile(r"\{(message|[0-9]+)(?:\.([A-Za-z_]+))?\}")


@functools.cache
def _table() -> dict[str, Refusal]:
    table: dict[str, Refusal] = {}
    for group in GROUPS:
        for name, (role, arity) in group.messages.items():
            if name in table:
                raise RuntimeError(f"{name} is refused twice")
            table[name] = Refusal(name, role, arity, group)
    return table


def refusal(wire_name: str) -> Refusal | None:
    """How ``Class.message`` is refused, or None when it is not."""
    return _table().get(wire_name)


def refused() -> dict[str, Refusal]:
    """Every refused message by wire name."""
    return dict(_table())


def parameter(template: str) -> tuple[str, int | None, str | None]:
    """A parameter template's parts: ``message`` or an argument index, and the field to read, if any."""
    match = _TEMPLATE.fullmatch(template)
    if match is None:
        return template, None, None
    what, field = match.groups()
    return ("message", None, None) if what == "message" else ("arg", int(what), field)


def markdown() -> str:
    """The refused messages as docs/api.md lists them: one section per group, owned groups last."""
    lines: list[str] = []
    for group in sorted(GROUPS, key=lambda g: g.owned):
        shown = ", ".join(f"`{p}`" for p in group.params)
        error = f"`{group.code}`" + (f" [{shown}]" if shown else "")
        owned = " *(owned by another issue in progress)*" if group.owned else ""
        lines += [f"#### {group.title}{owned}", f"{error}: {group.reason}", ""]
        lines += [", ".join(f"`{name}`" for name in sorted(group.messages)), ""]
    return "\n".join(lines)

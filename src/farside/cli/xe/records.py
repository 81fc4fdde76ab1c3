"""The fields xe shows for each class, in xe's order, with xe's names and markers.

Only the fields a Farside pool has are listed; xe's "expensive" fields (computed by an extra call
per object, such as possible-hosts) and hidden ones are left out. Each ``View`` also carries xe's
defaults for ``<class>-list``: the fields shown without ``params=`` and the filters always applied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from farside.cli.xe.fields import (
    NOT_IN_DATABASE,
    Field,
    Kind,
    Row,
    enum_field,
    flag,
    integer,
    map_text,
    mapping,
    operations,
    plain,
    ref,
    ref_name,
    refs,
    related,
    strings,
    text,
)
from farside.errors import FarsideError


@dataclass(frozen=True)
class View:
    """A XenAPI class as xe's commands show it.

    Args:
        noun: the prefix of its commands (``vm``, ``sr``, ``appliance``).
        cls: the XenAPI class.
        fields: every field, in xe's order.
        list_params: the fields ``<noun>-list`` shows by default (empty: all of them).
        filters: filters ``<noun>-list`` always applies (``is-a-template=false`` for VMs).
    """

    noun: str
    cls: str
    fields: list[Field]
    list_params: tuple[str, ...] = ()
    filters: tuple[tuple[str, str], ...] = ()
    by_name: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})


def _metric(key: str, missing: str = NOT_IN_DATABASE) -> Callable[[Row], str]:
    """A field of the VM's VM_metrics record."""

    def get(row: Row) -> str:
        metrics = row.lookup.record("VM_metrics", row["metrics"])
        return text(metrics[key]) if metrics and key in metrics else missing

    return get


def _guest(key: str, as_map: bool = False) -> Callable[[Row], str]:
    """A field of the VM's VM_guest_metrics record (``<not in database>`` before the guest reports)."""

    def get(row: Row) -> str:
        metrics = row.lookup.record("VM_guest_metrics", row["guest_metrics"])
        if not metrics or key not in metrics:
            return NOT_IN_DATABASE
        return map_text(metrics[key]) if as_map else text(metrics[key])

    return get


_EXIT = {"destroy": "Destroy", "restart": "Restart"}
_CRASH = {
    "destroy": "Destroy",
    "coredump_and_destroy": "Core dump and destroy",
    "restart": "Restart",
    "coredump_and_restart": "Core dump and restart",
    "preserve": "Preserve",
    "rename_restart": "Rename restart",
}
_SOFTREBOOT = {"destroy": "Destroy", "restart": "Restart", "preserve": "Preserve", "soft_reboot": "Soft reboot"}
_VDI_TYPE = {
    "system": "System",
    "user": "User",
    "ephemeral": "Ephemeral",
    "suspend": "Suspend",
    "crashdump": "Crashdump",
    "ha_statefile": "HA statefile",
    "metadata": "Metadata",
    "redo_log": "Redo log",
    "rrd": "rrd",
    "pvs_cache": "PVS cache",
    "cbt_metadata": "CBT metadata",
}


def _power_state(value: str) -> str:
    return value[:1].lower() + value[1:]


VM = View(
    "vm",
    "VM",
    [
        plain("uuid", "uuid"),
        plain("name-label", "name_label", setter="set_name_label"),
        plain("name-description", "name_description", setter="set_name_description"),
        integer("user-version", "user_version", setter="set_user_version"),
        flag("is-a-template", "is_a_template", setter="set_is_a_template"),
        flag("is-default-template", "is_default_template"),
        flag("is-a-snapshot", "is_a_snapshot"),
        ref("snapshot-of", "snapshot_of", "VM"),
        refs("snapshots", "snapshots", "VM"),
        plain("snapshot-time", "snapshot_time"),
        related("snapshot-info", lambda row: map_text(row["snapshot_info"])),
        ref("parent", "parent", "VM"),
        refs("children", "children", "VM"),
        flag("is-control-domain", "is_control_domain"),
        enum_field("power-state", "power_state", _power_state),
        related("memory-actual", _metric("memory_actual")),
        plain("memory-overhead", "memory_overhead"),
        integer("memory-static-max", "memory_static_max", setter="set_memory_static_max"),
        integer("memory-dynamic-max", "memory_dynamic_max", setter="set_memory_dynamic_max"),
        integer("memory-dynamic-min", "memory_dynamic_min", setter="set_memory_dynamic_min"),
        integer("memory-static-min", "memory_static_min", setter="set_memory_static_min"),
        ref("suspend-VDI-uuid", "suspend_VDI", "VDI"),
        ref("suspend-SR-uuid", "suspend_SR", "SR", setter="set_suspend_SR"),
        mapping("VCPUs-params", "VCPUs_params", writable=True),
        integer("VCPUs-max", "VCPUs_max", setter="set_VCPUs_max"),
        integer("VCPUs-at-startup", "VCPUs_at_startup", setter="set_VCPUs_at_startup"),
        enum_field("actions-after-shutdown", "actions_after_shutdown", _EXIT, setter="set_actions_after_shutdown"),
        enum_field(
            "actions-after-softreboot", "actions_after_softreboot", _SOFTREBOOT, setter="set_actions_after_softreboot"
        ),
        enum_field("actions-after-reboot", "actions_after_reboot", _EXIT, setter="set_actions_after_reboot"),
        enum_field("actions-after-crash", "actions_after_crash", _CRASH),
        refs("console-uuids", "consoles", "console", as_set=True),
        related("hvm", _metric("hvm", "false")),
        mapping("platform", "platform", writable=True),
        strings("allowed-operations", "allowed_operations"),
        operations("current-operations", "current_operations"),
        mapping("blocked-operations", "blocked_operations", writable=True),
        enum_field("domain-type", "domain_type", str),
        related("current-domain-type", _metric("current_domain_type")),
        plain("HVM-boot-policy", "HVM_boot_policy"),
        mapping("HVM-boot-params", "HVM_boot_params", writable=True),
        plain("HVM-shadow-multiplier", "HVM_shadow_multiplier"),
        plain("PV-kernel", "PV_kernel", setter="set_PV_kernel"),
        plain("PV-ramdisk", "PV_ramdisk", setter="set_PV_ramdisk"),
        plain("PV-args", "PV_args", setter="set_PV_args"),
        plain("PV-legacy-args", "PV_legacy_args", setter="set_PV_legacy_args"),
        plain("PV-bootloader", "PV_bootloader", setter="set_PV_bootloader"),
        plain("PV-bootloader-args", "PV_bootloader_args", setter="set_PV_bootloader_args"),
        related("last-boot-CPU-flags", lambda row: map_text(row["last_boot_CPU_flags"])),
        ref("resident-on", "resident_on", "host"),
        ref("affinity", "affinity", "host", setter="set_affinity"),
        mapping("other-config", "other_config", writable=True),
        plain("dom-id", "domid"),
        plain("recommendations", "recommendations"),
        mapping("xenstore-data", "xenstore_data", writable=True),
        Field(
            "ha-always-run",
            lambda row: text(row["ha_always_run"]),
            deprecated=True,
        ),
        plain("ha-restart-priority", "ha_restart_priority", setter="set_ha_restart_priority"),
        related("blobs", lambda row: "; ".join(f"{k}: {row.lookup.uuid('blob', v)}" for k, v in row["blobs"].items())),
        related("start-time", _metric("start_time", "<unknown time>")),
        related("install-time", _metric("install_time", "<unknown time>")),
        related("VCPUs-number", _metric("VCPUs_number")),
        related("os-version", _guest("os_version", True), Kind.MAP),
        related("netbios-name", _guest("netbios_name", True), Kind.MAP),
        related("PV-drivers-version", _guest("PV_drivers_version", True), Kind.MAP),
        related("PV-drivers-up-to-date", _guest("PV_drivers_up_to_date"), deprecated=True),
        related("memory", _guest("memory", True), Kind.MAP),
        related("disks", _guest("disks", True), Kind.MAP),
        refs("VBDs", "VBDs", "VBD", as_set=True),
        related("networks", _guest("networks", True), Kind.MAP),
        related("PV-drivers-detected", _guest("PV_drivers_detected")),
        related("other", _guest("other", True), Kind.MAP),
        related("live", _guest("live")),
        related("guest-metrics-last-updated", _guest("last_updated")),
        strings("tags", "tags", sep=", ", add=True),
        ref("appliance", "appliance", "VM_appliance", setter="set_appliance"),
        ref("snapshot-schedule", "snapshot_schedule", "VMSS", setter="set_snapshot_schedule"),
        flag("is-vmss-snapshot", "is_vmss_snapshot"),
        integer("start-delay", "start_delay", setter="set_start_delay"),
        integer("shutdown-delay", "shutdown_delay", setter="set_shutdown_delay"),
        integer("order", "order", setter="set_order"),
        plain("version", "version"),
        plain("generation-id", "generation_id"),
        plain("hardware-platform-version", "hardware_platform_version"),
        flag("has-vendor-device", "has_vendor_device"),
        flag("requires-reboot", "requires_reboot"),
        plain("reference-label", "reference_label"),
        related("bios-strings", lambda row: map_text(row["bios_strings"]), Kind.MAP),
        related("pending-guidances", lambda row: "; ".join(row["pending_guidances"])),
        refs("vtpms", "VTPMs", "VTPM"),
    ],
    list_params=("name-label", "uuid", "power-state"),
    filters=(("is-a-template", "false"), ("is-a-snapshot", "false")),
)


def _sr_host(row: Row) -> str:
    pbds = row["PBDs"]
    if len(pbds) > 1:
        return "<shared>"
    pbd = row.lookup.record("PBD", pbds[0]) if pbds else None
    return row.lookup.name("host", pbd["host"]) if pbd else NOT_IN_DATABASE


SR = View(
    "sr",
    "SR",
    [
        plain("uuid", "uuid"),
        plain("name-label", "name_label", setter="set_name_label"),
        plain("name-description", "name_description", setter="set_name_description"),
        related("host", _sr_host),
        strings("allowed-operations", "allowed_operations"),
        operations("current-operations", "current_operations"),
        refs("VDIs", "VDIs", "VDI", as_set=True),
        refs("PBDs", "PBDs", "PBD", as_set=True),
        plain("virtual-allocation", "virtual_allocation"),
        plain("physical-utilisation", "physical_utilisation"),
        plain("physical-size", "physical_size"),
        plain("type", "type"),
        plain("content-type", "content_type"),
        flag("shared", "shared"),
        ref("introduced-by", "introduced_by", "DR_task"),
        flag("is-tools-sr", "is_tools_sr"),
        mapping("other-config", "other_config", writable=True),
        mapping("sm-config", "sm_config"),
        related("blobs", lambda row: "; ".join(f"{k}: {row.lookup.uuid('blob', v)}" for k, v in row["blobs"].items())),
        flag("local-cache-enabled", "local_cache_enabled"),
        strings("tags", "tags", sep=", ", add=True),
        flag("clustered", "clustered"),
    ],
    list_params=("uuid", "name-label", "name-description", "host", "type", "content-type"),
)

PBD = View(
    "pbd",
    "PBD",
    [
        plain("uuid", "uuid"),
        Field("host", lambda row: row.lookup.uuid("host", row["host"]), deprecated=True),
        ref("host-uuid", "host", "host"),
        ref_name("host-name-label", "host", "host"),
        ref("sr-uuid", "SR", "SR"),
        ref_name("sr-name-label", "SR", "SR"),
        mapping("device-config", "device_config"),
        flag("currently-attached", "currently_attached"),
        mapping("other-config", "other_config", writable=True),
    ],
    list_params=("uuid", "host-uuid", "sr-uuid", "device-config", "currently-attached"),
)


def _metadata_of_pool(row: Row) -> str:
    """The pool whose database the VDI holds: this pool's uuid, or the one read from the VDI."""
    owner = row["metadata_of_pool"]
    pools = row.lookup.records("pool")
    if owner in pools:
        return str(pools[owner]["uuid"])
    try:
        found = str(row.call("read_database_pool_uuid", row.ref))
    except FarsideError:  # as xe: a VDI whose database cannot be read belongs to no known pool
        return NOT_IN_DATABASE
    return found or NOT_IN_DATABASE


VDI = View(
    "vdi",
    "VDI",
    [
        plain("uuid", "uuid"),
        plain("name-label", "name_label", setter="set_name_label"),
        plain("name-description", "name_description", setter="set_name_description"),
        flag("is-a-snapshot", "is_a_snapshot"),
        ref("snapshot-of", "snapshot_of", "VDI"),
        refs("snapshots", "snapshots", "VDI"),
        plain("snapshot-time", "snapshot_time"),
        strings("allowed-operations", "allowed_operations"),
        operations("current-operations", "current_operations"),
        ref("sr-uuid", "SR", "SR"),
        ref_name("sr-name-label", "SR", "SR"),
        refs("vbd-uuids", "VBDs", "VBD", as_set=True),
        refs("crashdump-uuids", "crash_dumps", "crashdump", as_set=True),
        plain("virtual-size", "virtual_size"),
        plain("physical-utilisation", "physical_utilisation"),
        plain("location", "location"),
        enum_field("type", "type", _VDI_TYPE),
        flag("sharable", "sharable"),
        flag("read-only", "read_only"),
        flag("storage-lock", "storage_lock"),
        flag("managed", "managed"),
        Field("parent", lambda row: row.lookup.uuid("VDI", row["parent"]), deprecated=True),
        flag("missing", "missing"),
        flag("is-tools-iso", "is_tools_iso"),
        mapping("other-config", "other_config", writable=True),
        mapping("xenstore-data", "xenstore_data"),
        mapping("sm-config", "sm_config"),
        enum_field("on-boot", "on_boot", str),
        flag("allow-caching", "allow_caching"),
        flag("metadata-latest", "metadata_latest"),
        related("metadata-of-pool", _metadata_of_pool),
        strings("tags", "tags", sep=", ", add=True),
        flag("cbt-enabled", "cbt_enabled"),
    ],
    list_params=("uuid", "name-label", "name-description", "virtual-size", "read-only", "sharable", "sr-uuid"),
)

APPLIANCE = View(
    "appliance",
    "VM_appliance",
    [
        plain("uuid", "uuid"),
        plain("name-label", "name_label", setter="set_name_label"),
        plain("name-description", "name_description", setter="set_name_description"),
        refs("VMs", "VMs", "VM", as_set=True),
        strings("allowed-operations", "allowed_operations"),
        operations("current-operations", "current_operations"),
    ],
)

DR_TASK = View(
    "drtask",
    "DR_task",
    [
        plain("uuid", "uuid"),
        refs("introduced-SRs", "introduced_SRs", "SR"),
    ],
)

# xe's snapshot-* commands show VMs that are snapshots, with the VM's fields.
SNAPSHOT = View(
    "snapshot",
    "VM",
    VM.fields,
    list_params=("uuid", "name-label", "name-description"),
    filters=(("is-a-snapshot", "true"),),
)

VMSS = View(
    "vmss",
    "VMSS",
    [
        plain("uuid", "uuid"),
        plain("name-label", "name_label", setter="set_name_label"),
        plain("name-description", "name_description", setter="set_name_description"),
        flag("enabled", "enabled", setter="set_enabled"),
        plain("type", "type"),
        integer("retained-snapshots", "retained_snapshots", setter="set_retained_snapshots"),
        plain("frequency", "frequency"),
        mapping("schedule", "schedule"),
        plain("last-run-time", "last_run_time"),
        refs("VMs", "VMs", "VM", as_set=True),
    ],
)

# Templates are VMs; xe lists them apart (template-list) and leaves out snapshots.
TEMPLATE = View(
    "template",
    "VM",
    VM.fields,
    list_params=("uuid", "name-label", "name-description"),
    filters=(("is-a-template", "true"), ("is-a-snapshot", "false")),
)
# xe's cd-list: the VDIs of ISO SRs (content-type iso), which CD drives take.
CD = View("cd", "VDI", VDI.fields, list_params=("uuid", "name-label"))

VIEWS = {view.noun: view for view in (VM, TEMPLATE, SR, PBD, VDI, CD, APPLIANCE, DR_TASK, SNAPSHOT, VMSS)}

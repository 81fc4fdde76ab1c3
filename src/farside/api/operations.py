"""``allowed_operations``: what each object's state allows, limited to what this server answers.

xapi lists an operation in an object's ``allowed_operations`` when the object's state allows it
(xapi_vm_lifecycle.ml, xapi_vdi.ml, xapi_sr_operations.ml, ...). Farside lists it only if the
message behind it is also answered here: each operation names its message (``clone`` is
``VM.clone``), and an operation whose message has no handler yet is left out, so the lists grow
by themselves as handlers land. An operation carried by an HTTP handler (``export``) names it as
``http/<name>``; the module that serves it calls ``provides``.

The lists are kept current by ``refresh``, which the database calls before every commit: each
object the transaction changed (and each object whose list depends on one that changed: a VBD's
VM and VDI, a PBD's SR) gets its list recomputed, in the same transaction, so a client hears the
change in the same event. While an operation is in progress on a VM or a vApp (its
``current_operations`` not empty), its list is empty, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from farside.api.registry import HANDLERS
from farside.api.storage import vdi_busy
from farside.db import Transaction
from farside.model import STORED
from farside.model.messages import lookup
from farside.model.types import NULL_REF

_PROVIDED: set[str] = set()


def provides(name: str) -> None:
    """Declare that the HTTP handler ``http/<name>`` is served (for the operations it carries)."""
    _PROVIDED.add(f"http/{name}")


def answered(wire_name: str) -> bool:
    """Whether this server answers ``wire_name`` (a message, or an ``http/`` handler)."""
    if wire_name.startswith("http/"):
        return wire_name in _PROVIDED
    sig = lookup(wire_name)
    return sig is not None and (sig.kind != "explicit" or sig.wire_name in HANDLERS)


# Each class's operations (its allowed_operations enum) and the message each needs.
_VM_MESSAGES = {
    "start": "VM.start",
    "start_on": "VM.start_on",
    "resume": "VM.resume",
    "resume_on": "VM.resume_on",
    "clean_shutdown": "VM.clean_shutdown",
    "hard_shutdown": "VM.hard_shutdown",
    "shutdown": "VM.shutdown",
    "clean_reboot": "VM.clean_reboot",
    "hard_reboot": "VM.hard_reboot",
    "pause": "VM.pause",
    "unpause": "VM.unpause",
    "suspend": "VM.suspend",
    "destroy": "VM.destroy",
    "clone": "VM.clone",
    "copy": "VM.copy",
    "snapshot": "VM.snapshot",
    "checkpoint": "VM.checkpoint",
    "revert": "VM.revert",
    "provision": "VM.provision",
    "export": "http/export",
    "metadata_export": "http/export_metadata",
    "pool_migrate": "VM.pool_migrate",
    "migrate_send": "VM.migrate_send",
    "power_state_reset": "VM.power_state_reset",
    "changing_memory_limits": "VM.set_memory_limits",
    "changing_static_range": "VM.set_memory_static_range",
    "changing_dynamic_range": "VM.set_memory_dynamic_range",
    "changing_VCPUs": "VM.set_VCPUs_max",
    "changing_VCPUs_live": "VM.set_VCPUs_number_live",
    "send_sysrq": "VM.send_sysrq",
    "send_trigger": "VM.send_trigger",
    "call_plugin": "VM.call_plugin",
    "assert_operation_valid": "VM.assert_operation_valid",
}
# The operations each power state allows a VM (xapi_vm_lifecycle.ml), before the message filter.
_VM_STATES = {
    "Halted": (
        "start", "start_on", "destroy", "clone", "copy", "snapshot", "provision", "export", "metadata_export",
        "changing_memory_limits", "changing_static_range", "changing_dynamic_range", "changing_VCPUs",
        "assert_operation_valid",
    ),
    "Running": (
        "clean_shutdown", "hard_shutdown", "shutdown", "clean_reboot", "hard_reboot", "pause", "suspend",
        "snapshot", "checkpoint", "pool_migrate", "migrate_send", "changing_dynamic_range", "changing_VCPUs_live",
        "send_sysrq", "send_trigger", "call_plugin", "metadata_export", "assert_operation_valid",
    ),
    "Paused": (
        "unpause", "hard_shutdown", "shutdown", "hard_reboot", "suspend", "snapshot", "metadata_export",
        "assert_operation_valid",
    ),
    "Suspended": (
        "resume", "resume_on", "hard_shutdown", "shutdown", "destroy", "clone", "copy", "snapshot", "export",
        "metadata_export", "power_state_reset", "assert_operation_valid",
    ),
}  # fmt: skip
# Templates and snapshots are copied from, never run (xapi: VM_IS_TEMPLATE).
_TEMPLATE_OPS = ("clone", "copy", "provision", "destroy", "export", "metadata_export")
_SNAPSHOT_OPS = ("clone", "copy", "revert", "destroy", "export", "metadata_export")

_VDI_MESSAGES = {
    "clone": "VDI.clone",
    "copy": "VDI.copy",
    "resize": "VDI.resize",
    "resize_online": "VDI.resize_online",
    "snapshot": "VDI.snapshot",
    "mirror": "VDI.pool_migrate",
    "destroy": "VDI.destroy",
    "forget": "VDI.forget",
    "update": "VDI.update",
    "enable_cbt": "VDI.enable_cbt",
    "disable_cbt": "VDI.disable_cbt",
    "data_destroy": "VDI.data_destroy",
    "list_changed_blocks": "VDI.list_changed_blocks",
    "set_on_boot": "VDI.set_on_boot",
}
# A VDI in use (by a VM that is not halted, or as a pool's metadata VDI) can only be copied from.
_VDI_IN_USE = ("snapshot", "clone", "copy", "mirror", "resize_online", "update", "list_changed_blocks")

_SR_MESSAGES = {
    "scan": "SR.scan",
    "destroy": "SR.destroy",
    "forget": "SR.forget",
    "plug": "PBD.plug",
    "unplug": "PBD.unplug",
    "update": "SR.update",
    "vdi_create": "VDI.create",
    "vdi_introduce": "VDI.introduce",
    "vdi_destroy": "VDI.destroy",
    "vdi_resize": "VDI.resize",
    "vdi_clone": "VDI.clone",
    "vdi_snapshot": "VDI.snapshot",
    "vdi_mirror": "VDI.pool_migrate",
    "vdi_enable_cbt": "VDI.enable_cbt",
    "vdi_disable_cbt": "VDI.disable_cbt",
    "vdi_data_destroy": "VDI.data_destroy",
    "vdi_list_changed_blocks": "VDI.list_changed_blocks",
    "vdi_set_on_boot": "VDI.set_on_boot",
    "pbd_create": "PBD.create",
    "pbd_destroy": "PBD.destroy",
}
_SR_ATTACHED = (*(op for op in _SR_MESSAGES if op.startswith("vdi_")), "scan", "update", "unplug", "destroy")
_SR_DETACHED = ("plug", "forget", "pbd_create", "pbd_destroy")

_VBD_MESSAGES = {
    "attach": "VBD.plug",
    "plug": "VBD.plug",
    "unplug": "VBD.unplug",
    "unplug_force": "VBD.unplug_force",
    "insert": "VBD.insert",
    "eject": "VBD.eject",
}
_VIF_MESSAGES = {"attach": "VIF.plug", "plug": "VIF.plug", "unplug": "VIF.unplug"}
_HOST_MESSAGES = {
    "evacuate": "host.evacuate",
    "shutdown": "host.shutdown",
    "reboot": "host.reboot",
    "power_on": "host.power_on",
    "enable": "host.enable",
    "vm_start": "VM.start",
    "vm_resume": "VM.resume",
    "vm_migrate": "VM.pool_migrate",
    "provision": "VM.provision",
}
_POOL_MESSAGES = {
    "ha_enable": "pool.enable_ha",
    "ha_disable": "pool.disable_ha",
    "designate_new_master": "pool.designate_new_master",
    "eject": "pool.eject",
    "sync_updates": "pool.sync_updates",
    "cert_refresh": "pool.certificate_sync",
    "tls_verification_enable": "pool.enable_tls_verification",
}


def _only(candidates: tuple[str, ...] | list[str], messages: dict[str, str]) -> list[str]:
    return [op for op in candidates if op in messages and answered(messages[op])]


def _vm(tx: Transaction, ref: str, r: dict[str, Any]) -> list[str]:
    if r["current_operations"] or r["is_control_domain"]:
        return []
    if r["is_a_snapshot"]:
        return _only(_SNAPSHOT_OPS, _VM_MESSAGES)
    if r["is_a_template"]:
        return _only(_TEMPLATE_OPS, _VM_MESSAGES)
    return _only(_VM_STATES.get(r["power_state"], ()), _VM_MESSAGES)


def _sr_attached(tx: Transaction, sr: str) -> bool:
    return any(tx.get_field("PBD", pbd, "currently_attached") for pbd in tx.get_field("SR", sr, "PBDs"))


def _vdi(tx: Transaction, ref: str, r: dict[str, Any]) -> list[str]:
    if r["current_operations"] or not tx.exists("SR", r["SR"]) or not _sr_attached(tx, r["SR"]):
        return []
    if r["metadata_of_pool"] != NULL_REF or vdi_busy(tx, ref):
        return _only(_VDI_IN_USE, _VDI_MESSAGES)
    return _only(list(_VDI_MESSAGES), _VDI_MESSAGES)


def _sr(tx: Transaction, ref: str, r: dict[str, Any]) -> list[str]:
    if r["current_operations"]:
        return []
    return _only(_SR_ATTACHED if _sr_attached(tx, ref) else _SR_DETACHED, _SR_MESSAGES)


def _vm_running(tx: Transaction, vm: str) -> bool:
    return tx.exists("VM", vm) and tx.get_field("VM", vm, "power_state") == "Running"


def _vbd(tx: Transaction, ref: str, r: dict[str, Any]) -> list[str]:
    if r["current_operations"]:
        return []
    ops = []
    if _vm_running(tx, r["VM"]):
        ops += ["unplug", "unplug_force"] if r["currently_attached"] else ["attach", "plug"]
    if r["type"] == "CD":
        ops.append("insert" if r["empty"] else "eject")
    return _only(ops, _VBD_MESSAGES)


def _vif(tx: Transaction, ref: str, r: dict[str, Any]) -> list[str]:
    if r["current_operations"] or not _vm_running(tx, r["VM"]):
        return []
    return _only(["unplug"] if r["currently_attached"] else ["attach", "plug"], _VIF_MESSAGES)


def _host(tx: Transaction, ref: str, r: dict[str, Any]) -> list[str]:
    if r["current_operations"] or not r["enabled"]:
        return []
    return _only(list(_HOST_MESSAGES), _HOST_MESSAGES)


def _pool(tx: Transaction, ref: str, r: dict[str, Any]) -> list[str]:
    return [] if r["current_operations"] else _only(list(_POOL_MESSAGES), _POOL_MESSAGES)


Rule = Callable[[Transaction, str, dict[str, Any]], list[str]]
RULES: dict[str, Rule] = {"VM": _vm, "VDI": _vdi, "SR": _sr, "VBD": _vbd, "VIF": _vif, "host": _host, "pool": _pool}
_WATCHED = {*RULES, "PBD"}


def allowed(tx: Transaction, cls: str, ref: str) -> list[str]:
    """The operations the object's state allows and this server answers."""
    return RULES[cls](tx, ref, tx.get_record(cls, ref))


def _dependents(tx: Transaction, cls: str, ref: str) -> list[tuple[str, str]]:
    """Objects whose list depends on this one's state."""
    if cls == "VM":
        vbds = tx.get_field("VM", ref, "VBDs")
        vdis = [tx.get_field("VBD", v, "VDI") for v in vbds]
        return (
            [("VBD", v) for v in vbds]
            + [("VIF", v) for v in tx.get_field("VM", ref, "VIFs")]
            + [("VDI", v) for v in vdis if v != NULL_REF]
        )
    if cls == "VBD":
        return [("VM", tx.get_field("VBD", ref, "VM")), ("VDI", tx.get_field("VBD", ref, "VDI"))]
    if cls == "PBD":
        sr = tx.get_field("PBD", ref, "SR")
        return [("SR", sr)] + [("VDI", v) for v in tx.get_field("SR", sr, "VDIs")] if tx.exists("SR", sr) else []
    return []


def refresh(tx: Transaction) -> None:
    """Recompute the lists of the objects the transaction changed (the database's pre-commit hook)."""
    todo: dict[tuple[str, str], None] = {}
    for change in tx.log.changes():
        if change.op == "del" or change.cls not in _WATCHED or not tx.exists(change.cls, change.ref):
            continue
        if change.cls in RULES:
            todo[(change.cls, change.ref)] = None
        for key in _dependents(tx, change.cls, change.ref):
            todo[key] = None
    for cls, ref in todo:
        _store(tx, cls, ref)


def refresh_all(tx: Transaction) -> None:
    """Compute every object's list: at start-up, once the non-persistent fields are reset."""
    for cls in RULES:
        for ref in tx.refs(cls):
            _store(tx, cls, ref)


def _store(tx: Transaction, cls: str, ref: str) -> None:
    if cls not in STORED or ref == NULL_REF or not tx.exists(cls, ref):
        return
    value = allowed(tx, cls, ref)
    if tx.get_field(cls, ref, "allowed_operations") != value:
        tx.set_fields(cls, ref, {"allowed_operations": value})

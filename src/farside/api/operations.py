"""``allowed_operations``: what each object's state allows, limited to what this server answers.

xapi lists an operation in an object's ``allowed_operations`` when the object's state allows it
(xapi_vm_lifecycle.ml, xapi_vdi.ml, xapi_sr_operations.ml, ...). Farside lists it only if the
message behind it is also answered here: each operation names its message (``clone`` is
``VM.clone``), and an operation whose message has no handler yet is left out, so the lists grow
by themselves as handlers land. An operation carried by an HTTP handler (``export``) names it as
``http/<name>``; the module that serves it calls ``provides`` when it is imported (before the
server starts and computes every list).

The lists are kept current by ``refresh``, which the database calls before every commit: each
object the transaction changed (and each object whose list depends on one that changed: a VBD's
VM and VDI, a PBD's SR) gets its list recomputed, in the same transaction, so a client hears the
change in the same event. While an operation is in progress on an object (its
``current_operations`` not empty: ``claim`` here, the VM's own claim in api/vms.py), its list
is empty.
"""

from __future__ import annotations

import contextlib
import uuid as uuidlib
from collections.abc import Callable, Iterator
from typing import Any

from farside.api.registry import HANDLERS
from farside.db import Database, Transaction
from farside.errors import XenAPIFailure
from farside.model.messages import lookup
from farside.model.types import NULL_REF

_PROVIDED: set[str] = set()


@contextlib.contextmanager
def claim(db: Database, cls: str, ref: str, op: str) -> Iterator[None]:
    """Hold ``op`` in the object's ``current_operations`` while the block runs (so clients see it,
    and its allowed_operations empty), as xapi does; OTHER_OPERATION_IN_PROGRESS [cls, ref] when
    another operation holds it; HANDLE_INVALID for a dead ref."""
    token = str(uuidlib.uuid4())
    with db.write() as tx:
        if tx.get_field(cls, tx.check(cls, ref), "current_operations"):
            raise XenAPIFailure("OTHER_OPERATION_IN_PROGRESS", cls, ref)
        tx.set_fields(cls, ref, {"current_operations": {token: op}})
    try:
        yield
    finally:
        with db.write() as tx:
            if tx.exists(cls, ref):  # a destroy ends with the object gone
                tx.set_fields(cls, ref, {"current_operations": {}})


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
# What a snapshot allows, whatever its power state (xapi_vm_lifecycle.ml, check_snapshot); a
# checkpoint (Suspended) also hard_shutdown, which drops its memory image.
SNAPSHOT_OPS = ("revert", "clone", "copy", "export", "destroy", "hard_shutdown", "metadata_export")

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


_FIELDS: dict[str, tuple[str, ...]] = {
    "VM": ("power_state", "is_control_domain", "is_a_snapshot", "is_a_template", "is_default_template"),
    "VDI": ("SR", "metadata_of_pool"),
    "SR": (),
    "VBD": ("VM", "VDI", "currently_attached", "type", "empty"),
    "VIF": ("VM", "currently_attached"),
    "host": ("enabled",),
    "pool": (),
}
_COMMON = ("current_operations", "allowed_operations")
_WATCHED = {*_FIELDS, "PBD"}
_answered_cache: dict[tuple[int, tuple[str, ...]], list[str]] = {}
_answered_key: list[int] = [-1]


def _only(candidates: tuple[str, ...], messages: dict[str, str]) -> list[str]:
    # Memoised until a handler is registered or removed: every write asks, with few distinct lists.
    key = len(HANDLERS) + len(_PROVIDED)
    if _answered_key[0] != key:
        _answered_cache.clear()
        _answered_key[0] = key
    chosen = _answered_cache.get((id(messages), candidates))
    if chosen is None:
        chosen = [op for op in candidates if op in messages and answered(messages[op])]
        _answered_cache[(id(messages), candidates)] = chosen
    return list(chosen)


class _View:
    """The fields the rules read, fetched once per refresh (all at once for ``refresh_all``)."""

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self.rows: dict[str, dict[str, dict[str, Any]]] = {cls: {} for cls in _FIELDS}
        self._attached: dict[str, bool] = {}
        self._users: dict[str, list[str]] | None = None  # VDI -> VMs, when loaded in bulk

    def load_all(self) -> None:
        tx = self.tx
        for cls, fields in _FIELDS.items():
            self.rows[cls] = tx.select(cls, fields + _COMMON)
        for pbd in tx.select("PBD", ("SR", "currently_attached")).values():
            self._attached[pbd["SR"]] = self._attached.get(pbd["SR"], False) or pbd["currently_attached"]
        users: dict[str, list[str]] = {}
        for vbd in self.rows["VBD"].values():
            users.setdefault(vbd["VDI"], []).append(vbd["VM"])
        self._users = users

    def row(self, cls: str, ref: str) -> dict[str, Any] | None:
        rows = self.rows[cls]
        if ref not in rows:
            if self._users is not None or ref == NULL_REF or not self.tx.exists(cls, ref):
                return None
            rows[ref] = self.tx.get_fields(cls, ref, _FIELDS[cls] + _COMMON)
        return rows[ref]

    def sr_attached(self, sr: str) -> bool:
        if sr not in self._attached:
            pbds = self.tx.find("PBD", "SR", sr)
            self._attached[sr] = any(self.tx.get_field("PBD", p, "currently_attached") for p in pbds)
        return self._attached[sr]

    def vdi_users(self, vdi: str) -> list[str]:
        if self._users is not None:
            return self._users.get(vdi, [])
        return [self.tx.get_field("VBD", vbd, "VM") for vbd in self.tx.find("VBD", "VDI", vdi)]

    def vm_running(self, vm: str) -> bool:
        r = self.row("VM", vm)
        return r is not None and r["power_state"] == "Running"


def _vm(view: _View, ref: str, r: dict[str, Any]) -> list[str]:
    if r["current_operations"] or r["is_control_domain"]:
        return []
    if r["is_a_snapshot"]:
        return [
            op for op in _only(SNAPSHOT_OPS, _VM_MESSAGES) if op != "hard_shutdown" or r["power_state"] == "Suspended"
        ]
    if r["is_a_template"]:  # a default template is the pool's own: never provisioned or destroyed
        ops = (
            _TEMPLATE_OPS
            if not r["is_default_template"]
            else tuple(op for op in _TEMPLATE_OPS if op not in ("provision", "destroy"))
        )
        return _only(ops, _VM_MESSAGES)
    return _only(_VM_STATES.get(r["power_state"], ()), _VM_MESSAGES)


def _vdi_in_use(view: _View, ref: str, r: dict[str, Any]) -> bool:
    """A VM that is not halted (or is in an operation) uses it, or it is a pool's metadata VDI:
    api/storage.py's vdi_busy, from the view."""
    if r["metadata_of_pool"] != NULL_REF:
        return True
    for vm in view.vdi_users(ref):
        state = view.row("VM", vm)
        if state is not None and (state["power_state"] != "Halted" or state["current_operations"]):
            return True
    return False


def _vdi(view: _View, ref: str, r: dict[str, Any]) -> list[str]:
    if r["current_operations"] or not view.sr_attached(r["SR"]):
        return []
    if _vdi_in_use(view, ref, r):
        return _only(_VDI_IN_USE, _VDI_MESSAGES)
    return _only(_VDI_ALL, _VDI_MESSAGES)


def _sr(view: _View, ref: str, r: dict[str, Any]) -> list[str]:
    if r["current_operations"]:
        return []
    return _only(_SR_ATTACHED if view.sr_attached(ref) else _SR_DETACHED, _SR_MESSAGES)


def _vbd(view: _View, ref: str, r: dict[str, Any]) -> list[str]:
    if r["current_operations"]:
        return []
    ops: tuple[str, ...] = ()
    if view.vm_running(r["VM"]):
        ops += ("unplug", "unplug_force") if r["currently_attached"] else ("attach", "plug")
    if r["type"] == "CD":
        ops += ("insert",) if r["empty"] else ("eject",)
    return _only(ops, _VBD_MESSAGES)


def _vif(view: _View, ref: str, r: dict[str, Any]) -> list[str]:
    if r["current_operations"] or not view.vm_running(r["VM"]):
        return []
    return _only(("unplug",) if r["currently_attached"] else ("attach", "plug"), _VIF_MESSAGES)


def _host(view: _View, ref: str, r: dict[str, Any]) -> list[str]:
    if r["current_operations"] or not r["enabled"]:
        return []
    return _only(tuple(_HOST_MESSAGES), _HOST_MESSAGES)


def _pool(view: _View, ref: str, r: dict[str, Any]) -> list[str]:
    return [] if r["current_operations"] else _only(tuple(_POOL_MESSAGES), _POOL_MESSAGES)


_VDI_ALL = tuple(_VDI_MESSAGES)
Rule = Callable[[_View, str, dict[str, Any]], list[str]]
RULES: dict[str, Rule] = {"VM": _vm, "VDI": _vdi, "SR": _sr, "VBD": _vbd, "VIF": _vif, "host": _host, "pool": _pool}


def allowed(tx: Transaction, cls: str, ref: str) -> list[str]:
    """The operations the object's state allows and this server answers."""
    view = _View(tx)
    row = view.row(cls, ref)
    return [] if row is None else RULES[cls](view, ref, row)


def _dependents(view: _View, cls: str, ref: str) -> list[tuple[str, str]]:
    """Objects whose list depends on this one's state."""
    tx = view.tx
    if cls == "VM":
        vbds = tx.find("VBD", "VM", ref)
        vdis = [tx.get_field("VBD", v, "VDI") for v in vbds]
        return [("VBD", v) for v in vbds] + [("VIF", v) for v in tx.find("VIF", "VM", ref)] + [("VDI", v) for v in vdis]
    if cls == "VBD":
        row = view.row("VBD", ref)
        return [] if row is None else [("VM", row["VM"]), ("VDI", row["VDI"])]
    if cls == "PBD":
        sr = tx.get_field("PBD", ref, "SR")
        return [("SR", sr)] + [("VDI", v) for v in tx.find("VDI", "SR", sr)]
    return []


def refresh(tx: Transaction) -> None:
    """Recompute the lists of the objects the transaction changed (the database's pre-commit hook).

    A VM's dependents (its VBDs, VIFs and VDIs) are recomputed only when the VM's own list
    changed or the VM is new: their lists read only its power state and whether it is busy, which
    change its own list too. Most VM writes (a name, a setting) so cost one row's read.
    """
    changed = [c for c in tx.log.changes() if c.op != "del" and c.cls in _WATCHED]
    if not changed:
        return
    view = _View(tx)
    done: set[tuple[str, str]] = set()
    later: dict[tuple[str, str], None] = {}
    for change in changed:
        key = (change.cls, change.ref)
        if not tx.exists(*key):
            continue
        moved = change.cls in RULES and _store(view, *key)
        done.add(key)
        if change.cls != "VM" or moved or change.op == "add":
            for dependent in _dependents(view, *key):
                later[dependent] = None
    for key in later:
        if key not in done:
            _store(view, *key)


def refresh_all(tx: Transaction) -> None:
    """Compute every object's list: at start-up, once the non-persistent fields are reset and
    before anyone listens, so the lists are written in bulk, without events (a DR site may hold
    thousands of VMs)."""
    view = _View(tx)
    view.load_all()
    for cls, rows in view.rows.items():
        groups: dict[tuple[str, ...], list[str]] = {}
        for ref, row in rows.items():
            value = RULES[cls](view, ref, row)
            if row["allowed_operations"] != value:
                groups.setdefault(tuple(value), []).append(ref)
        for ops, refs in groups.items():
            tx.reset_fields(cls, {"allowed_operations": list(ops)}, refs=refs)


def _store(view: _View, cls: str, ref: str) -> bool:
    """Write the object's list if it changed; whether it did."""
    row = view.row(cls, ref)
    if row is None:
        return False
    value = RULES[cls](view, ref, row)
    if row["allowed_operations"] == value:
        return False
    view.tx.set_fields(cls, ref, {"allowed_operations": value})
    row["allowed_operations"] = value
    return True

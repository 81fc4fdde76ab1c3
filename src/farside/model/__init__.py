"""The datamodel: XenAPI's classes as Farside declares them, and the relations between them.

No I/O here. ``CLASSES`` maps each class's wire name to its declaration; ``RELATIONS`` pairs each
one-to-many set field with the ref field it is the inverse of, as xapi's ``all_relations`` does:
the set (``VM.VBDs``) is never stored, it is computed from the refs (``VBD.VM``).
"""

from __future__ import annotations

from dataclasses import dataclass

from farside.model.classes.blob import BLOB
from farside.model.classes.console import CONSOLE
from farside.model.classes.dr_run import DR_RUN
from farside.model.classes.dr_task import DR_TASK
from farside.model.classes.event import EVENT
from farside.model.classes.feature import FEATURE
from farside.model.classes.host import HOST
from farside.model.classes.host_cpu import HOST_CPU
from farside.model.classes.host_metrics import HOST_METRICS
from farside.model.classes.message import MESSAGE
from farside.model.classes.network import NETWORK
from farside.model.classes.pbd import PBD
from farside.model.classes.pif import PIF
from farside.model.classes.pool import POOL
from farside.model.classes.role import ROLE
from farside.model.classes.secret import SECRET
from farside.model.classes.session import SESSION
from farside.model.classes.sm import SM
from farside.model.classes.sr import SR
from farside.model.classes.task import TASK
from farside.model.classes.user import USER
from farside.model.classes.vbd import VBD
from farside.model.classes.vbd_metrics import VBD_METRICS
from farside.model.classes.vdi import VDI
from farside.model.classes.vif import VIF
from farside.model.classes.vif_metrics import VIF_METRICS
from farside.model.classes.vm import VM
from farside.model.classes.vm_appliance import VM_APPLIANCE
from farside.model.classes.vm_guest_metrics import VM_GUEST_METRICS
from farside.model.classes.vm_metrics import VM_METRICS
from farside.model.classes.vmss import VMSS
from farside.model.schema import ClassDef, Field

__all__ = ["CLASSES", "NETWORK", "RELATIONS", "STORED", "VM", "Relation", "class_named"]

CLASSES: dict[str, ClassDef] = {
    c.name: c
    for c in (
        SESSION, ROLE, TASK, EVENT, POOL, HOST, HOST_METRICS, HOST_CPU, SM, SR, PBD, VDI, VBD,
        VBD_METRICS, VM, VM_METRICS, VM_GUEST_METRICS, VIF, NETWORK, VM_APPLIANCE, DR_TASK,
        MESSAGE, BLOB, USER, DR_RUN, VIF_METRICS, FEATURE, VMSS, PIF, CONSOLE, SECRET,
    )
}  # fmt: skip

# event is a message namespace with a record shape, not a table.
STORED: dict[str, ClassDef] = {name: c for name, c in CLASSES.items() if name != "event"}

_BY_LOWER = {name.lower(): c for name, c in CLASSES.items()}


def class_named(name: str) -> ClassDef | None:
    """The class whose wire name is ``name``, compared without case as event.from does."""
    return _BY_LOWER.get(name.lower())


@dataclass(frozen=True)
class Relation:
    """``one.set_field`` lists every ``many`` object whose ``many.ref_field`` points at it."""

    one: str
    set_field: str
    many: str
    ref_field: str


# From xapi's datamodel (ocaml/idl/datamodel.ml, all_relations), for the classes Farside serves.
RELATIONS: tuple[Relation, ...] = (
    Relation("session", "tasks", "task", "session"),
    Relation("task", "subtasks", "task", "subtask_of"),
    Relation("pool", "metadata_VDIs", "VDI", "metadata_of_pool"),
    Relation("host", "PBDs", "PBD", "host"),
    Relation("host", "host_CPUs", "host_cpu", "host"),
    Relation("host", "resident_VMs", "VM", "resident_on"),
    Relation("SR", "PBDs", "PBD", "SR"),
    Relation("SR", "VDIs", "VDI", "SR"),
    Relation("DR_task", "introduced_SRs", "SR", "introduced_by"),
    Relation("VDI", "VBDs", "VBD", "VDI"),
    Relation("VDI", "snapshots", "VDI", "snapshot_of"),
    Relation("VM", "VBDs", "VBD", "VM"),
    Relation("VM", "VIFs", "VIF", "VM"),
    Relation("VM", "snapshots", "VM", "snapshot_of"),
    Relation("VM", "children", "VM", "parent"),
    Relation("VM_appliance", "VMs", "VM", "appliance"),
    Relation("VMSS", "VMs", "VM", "snapshot_schedule"),
    Relation("network", "VIFs", "VIF", "network"),
    Relation("network", "PIFs", "PIF", "network"),
    Relation("host", "PIFs", "PIF", "host"),
    Relation("VM", "consoles", "console", "VM"),
)


def inverse_of(cls: str, field: str) -> Relation | None:
    """The relation whose computed set is ``cls.field``, if it is one."""
    for rel in RELATIONS:
        if rel.one == cls and rel.set_field == field:
            return rel
    return None


def stored_fields(c: ClassDef) -> list[Field]:
    """The fields kept in the class's table: every field but the computed inverse sets."""
    return [f for f in c.fields if inverse_of(c.name, f.name) is None]


def _check_relations() -> None:
    for rel in RELATIONS:
        CLASSES[rel.one].field(rel.set_field)
        CLASSES[rel.many].field(rel.ref_field)


_check_relations()

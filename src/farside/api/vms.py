"""VM lifecycle: XenAPI's power operations carried out by the hypervisor driver.

Each operation checks the VM's state and claims it in one transaction (``current_operations``,
so two operations on one VM never overlap: ``OTHER_OPERATION_IN_PROGRESS``), then acts through
the driver with no transaction open, then records the outcome. ``start_delay`` and
``shutdown_delay`` are slept inside the operation, as xapi does, so vApp groups follow them; a
delay being slept ends early on ``task.cancel`` of its task, on a ``hard_shutdown`` of the VM and
when the server stops, so that no delay holds a VM, a task or the server.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from farside.api import consoles, operations
from farside.api.iso import ISO_FORMAT, is_iso
from farside.api.iso import image_path as iso_image
from farside.api.storage import StorageService, lun_record
from farside.api.tasks import TaskManager
from farside.db import Database, Transaction
from farside.errors import FarsideError, OperationNotAllowed, TaskCancelled, XenAPIFailure
from farside.hypervisor.driver import DiskSpec, DomainState, Driver, NicSpec, VMSpec
from farside.hypervisor.errors import DomainError
from farside.hypervisor.migration import MigrationReport
from farside.model.types import NULL_REF, now
from farside.model.vm_rules import MAX_DELAY_S, power_state_error
from farside.storage import image
from farside.storage.lun import image_format, new_location, recorded_format

log = logging.getLogger(__name__)

MIB = 1 << 20
# What a QEMU process costs beyond its guest's memory (FACTS.md: ~41 MiB RSS for a 16 MiB guest).
VM_OVERHEAD_BYTES = 32 * MIB
# Kept back for the host's own system and Farside itself.
HOST_RESERVE_BYTES = 1024 * MIB
# Presses of the ACPI button are dropped until the guest enables it (FACTS.md): press again.
BUTTON_RETRY_S = 0.5
DEFAULT_CLEAN_SHUTDOWN_S = 60.0
# How long a hard_shutdown waits for the operation whose delay it ended to let go of the VM (one
# database write).
RELEASE_WAIT_S = 30.0


def control_domain_refusal() -> OperationNotAllowed:
    """The control domain is the host's own system: xapi refuses it every lifecycle operation."""
    return OperationNotAllowed("This operation is not allowed on the control domain.")


class _Wake(enum.Enum):
    """Why a delay ended before its time."""

    CANCEL = "task.cancel"
    HARD_SHUTDOWN = "hard_shutdown"
    STOP = "server stop"


class _Claim(dict[str, Any]):
    """A VM's record as claimed by ``_operation``; ``settle`` has the release record the outcome too.

    ``task`` is the task the operation runs for (its own, or its vApp's); ``wake`` ends the
    operation's delay, now or before it begins; ``released`` is set once the VM is let go.
    """

    outcome: tuple[str, int] | None = None

    def __init__(self, record: dict[str, Any], task: str | None) -> None:
        super().__init__(record)
        self.task = task
        self.sleeping = False
        self.woken_by: _Wake | None = None
        self.woken = threading.Event()
        self.released = threading.Event()

    def settle(self, state: str, domid: int = -1) -> None:
        """Record ``state`` in the transaction that releases the claim (one commit instead of two)."""
        self.outcome = (state, domid)

    def wake(self, why: _Wake) -> None:
        if self.woken_by is None:
            self.woken_by = why
        self.woken.set()


def _holds_disks(tx: Transaction, vm: str) -> bool:
    """Running, paused, suspended, or being started: its disks are taken."""
    if tx.get_field("VM", vm, "power_state") != "Halted":
        return True
    return bool(tx.get_field("VM", vm, "scheduled_to_be_resident_on") != NULL_REF)


def contained_disks(spec: VMSpec) -> None:
    """Refuse (SR_BACKEND_FAILURE_IMAGE_UNSAFE) a disk whose image is not self-contained, before
    QEMU opens it: a header naming a backing or data file would have QEMU open a host file. Called
    outside transactions (it runs qemu-img)."""
    for disk in spec.disks:
        image.contained(disk.path, disk.format)


class VMService:
    """Power operations of the VMs resident on this pool's one host."""

    def __init__(
        self,
        db: Database,
        driver: Driver,
        storage: StorageService,
        tasks: TaskManager,
        pool: str,
        host: str,
        console_base: str = "",
    ) -> None:
        self._db = db
        self._console_base = console_base  # where console locations point (this server's URL)
        self.driver = driver
        self._storage = storage
        self._tasks = tasks
        self._pool = pool
        self._host = host
        # The operations in progress, by VM ref: what a cancel, a hard_shutdown or a stop wakes.
        self._claims: dict[str, _Claim] = {}
        self._claims_lock = threading.Lock()
        self._stopping = False
        driver.on_halted = self._halted_by_itself
        storage.on_fence.append(self.stop_users)
        tasks.on_cancel(self._task_cancelled)

    # -- claiming a VM for one operation --------------------------------------------------------

    @contextlib.contextmanager
    def _operation(
        self, vm: str, op: str, allowed_states: tuple[str, ...], reserve: bool = False, task: str | None = None
    ) -> Iterator[_Claim]:
        """Claim the VM for ``op`` (run for ``task``). ``reserve`` (start, resume): check and book the
        host's memory and the VM's disks in the same transaction, so two starts cannot both take the
        last of them."""
        token = str(uuidlib.uuid4())
        if reserve:  # a DR run going on in-process must not boot more VMs while the server stops
            self.check_not_stopping()
        with self._db.write() as tx:
            record = tx.get_record("VM", tx.check("VM", vm))
            if record["is_control_domain"]:
                raise control_domain_refusal()
            if record["current_operations"]:
                raise XenAPIFailure("OTHER_OPERATION_IN_PROGRESS", "VM", vm)
            if record["is_a_snapshot"] and op not in operations.SNAPSHOT_OPS:
                raise XenAPIFailure("VM_IS_SNAPSHOT", vm, op)
            if record["power_state"] not in allowed_states:
                raise power_state_error(vm, allowed_states[0], record["power_state"])
            # allowed_operations follow (api/operations.py: empty while an operation runs).
            claim_fields: dict[str, Any] = {"current_operations": {token: op}}
            if reserve:
                if record["is_a_template"]:
                    raise XenAPIFailure("VM_IS_TEMPLATE", vm)
                self.check_resources(tx, vm, record)
                claim_fields["scheduled_to_be_resident_on"] = self._host
            tx.set_fields("VM", vm, claim_fields)
        claim = _Claim(record, task)
        with self._claims_lock:
            self._claims[vm] = claim
        try:
            yield claim
        finally:
            try:
                with self._db.write() as tx:
                    if tx.exists("VM", vm):
                        if claim.outcome is not None:
                            self._apply_state(tx, vm, *claim.outcome)
                        tx.set_fields("VM", vm, {"current_operations": {}, "scheduled_to_be_resident_on": NULL_REF})
            finally:
                with self._claims_lock:
                    if self._claims.get(vm) is claim:
                        del self._claims[vm]
                claim.released.set()

    def claim(self, vm: str, op: str, allowed_states: tuple[str, ...], task: str | None = None
              ) -> contextlib.AbstractContextManager[_Claim]:  # fmt: skip
        """Hold the VM for ``op`` (snapshot, checkpoint, revert: api/snapshots.py; an export while
        it streams) as every power operation holds it: any other operation on it meanwhile gets
        OTHER_OPERATION_IN_PROGRESS; VM_IS_SNAPSHOT, VM_BAD_POWER_STATE."""
        return self._operation(vm, op, allowed_states, task=task)

    def record_state(self, vm: str, state: str, domid: int = -1) -> None:
        self._record_state(vm, state, domid)

    def claimed(self, vm: str, op: str) -> contextlib.AbstractContextManager[_Claim]:
        """Hold a halted VM for ``op`` (clone, copy, provision): no power operation or other
        operation starts on it meanwhile (OTHER_OPERATION_IN_PROGRESS)."""
        return self._operation(vm, op, ("Halted",))

    # -- delays -----------------------------------------------------------------------------

    def _delay(self, claim: _Claim, field: str) -> None:
        """Sleep the VM's ``field`` (start_delay, shutdown_delay), at most MAX_DELAY_S.

        It ends early on a hard_shutdown of the VM (the operation then ends as it would have), on
        task.cancel of the operation's task (TASK_CANCELLED) and when the server stops
        (OPERATION_NOT_ALLOWED): a vApp or DR start must not take a cut delay for a waited one.
        """
        seconds = int(claim[field])
        if seconds <= 0:
            return
        if seconds > MAX_DELAY_S:  # a record from before the bound, or from foreign metadata
            log.warning("VM %s: %s of %d s is over the bound: %d s", claim["uuid"], field, seconds, MAX_DELAY_S)
            seconds = MAX_DELAY_S
        with self._claims_lock:
            claim.sleeping = True
            if self._stopping:
                claim.wake(_Wake.STOP)
        try:
            if claim.task is not None:
                self._tasks.check_cancelled(claim.task)  # asked before the delay began
            claim.woken.wait(seconds)
        finally:
            with self._claims_lock:
                claim.sleeping = False
        if claim.woken_by is _Wake.CANCEL:
            assert claim.task is not None
            raise TaskCancelled(claim.task)
        if claim.woken_by is _Wake.STOP:
            raise OperationNotAllowed(f"The server is stopping: the {field} of VM {claim['uuid']} was cut short.")
        if claim.woken_by is not None:
            log.info("VM %s: %s ended early by %s", claim["uuid"], field, claim.woken_by.value)

    def _end_delay(self, vm: str) -> None:
        """A hard_shutdown does not wait out a delay another operation sleeps on the VM: it ends the
        delay and waits for that operation to let go of the VM."""
        with self._claims_lock:
            claim = self._claims.get(vm)
            if claim is None or not claim.sleeping:
                return
            claim.wake(_Wake.HARD_SHUTDOWN)
        claim.released.wait(RELEASE_WAIT_S)

    def _task_cancelled(self, task: str) -> None:
        with self._claims_lock:
            for claim in self._claims.values():
                if claim.task == task:
                    claim.wake(_Wake.CANCEL)

    def check_not_stopping(self) -> None:
        """OPERATION_NOT_ALLOWED once the server stops: what would start VMs (or the next order
        group) starts nothing more."""
        if self._stopping:
            raise OperationNotAllowed("The server is stopping: nothing more is started until it is back.")

    def stop_delays(self) -> None:
        """The server is stopping: every delay being slept ends now, and none begins any more."""
        with self._claims_lock:
            self._stopping = True
            for claim in self._claims.values():
                claim.wake(_Wake.STOP)

    # -- building what the driver needs ---------------------------------------------------------

    def spec(self, tx: Transaction, vm: str, record: dict[str, Any]) -> VMSpec:
        """The VM as the driver sees it; VM_REQUIRES_SR / VDI_MISSING when its disks are not there."""
        disks = []
        cd_drives = []
        for vbd in record["VBDs"]:
            v = tx.get_record("VBD", vbd)
            if v["empty"] or v["VDI"] == NULL_REF:
                if v["type"] == "CD":
                    cd_drives.append(int(v["userdevice"]))
                continue
            disks.append(self.disk_spec(tx, vm, v))
        nics = []
        for vif in record["VIFs"]:
            r = tx.get_record("VIF", vif)
            bridge = tx.get_field("network", r["network"], "bridge") if tx.exists("network", r["network"]) else ""
            nics.append(NicSpec(mac=r["MAC"], bridge=bridge, device=int(r["device"])))
        return VMSpec(
            uuid=record["uuid"],
            name=record["name_label"],
            memory_bytes=record["memory_static_max"],
            vcpus=max(record["VCPUs_at_startup"], 1),
            disks=sorted(disks, key=lambda d: d.userdevice),
            nics=sorted(nics, key=lambda n: n.device),
            cd_drives=sorted(cd_drives),
        )

    def disk_spec(self, tx: Transaction, vm: str, vbd: dict[str, Any]) -> DiskSpec:
        """A VBD's disk as the driver opens it; an ISO SR's VDIs are raw files of its library."""
        vdi = tx.get_record("VDI", vbd["VDI"])
        try:
            if is_iso(tx, vdi["SR"]):
                path, fmt = iso_image(tx, vdi), ISO_FORMAT
            else:
                lun = self._storage.attached_lun(tx, vdi["SR"])
                path, fmt = lun.image_path(vdi["location"]), recorded_format(vdi["location"])
        except XenAPIFailure as exc:
            if exc.failure[0] == "VDI_LOCATION_MISSING":
                raise
            raise XenAPIFailure("VM_REQUIRES_SR", vm, vdi["SR"]) from None
        if not path.exists():
            raise XenAPIFailure("VDI_MISSING", vdi["SR"], vbd["VDI"])
        return DiskSpec(
            vdi_uuid=vdi["uuid"],
            path=path,
            format=fmt,
            read_only=vbd["mode"] == "RO" or vdi["read_only"],
            userdevice=int(vbd["userdevice"]),
            cdrom=vbd["type"] == "CD",
            bootable=vbd["bootable"],
        )

    def change_medium(self, vbd: str, vdi: str) -> None:
        """VBD.insert (``vdi``) and VBD.eject (NULL) of a CD drive, in the running domain too when
        its VM runs: the driver swaps the disc first, then the VBD records it. The image is
        checked self-contained before QEMU gets it, as at start."""
        with self._db.read() as tx:
            record = tx.get_record("VBD", vbd)
            vm = record["VM"]
            live = tx.get_field("VM", vm, "power_state") in ("Running", "Paused")
            uuid = tx.get_field("VM", vm, "uuid")
            disk = self.disk_spec(tx, vm, {**record, "VDI": vdi}) if vdi != NULL_REF and live else None
        if live:
            if disk is not None:
                image.contained(disk.path, disk.format)
            self.driver.change_medium(uuid, int(record["userdevice"]), disk)
        with self._db.write() as tx:
            if not live and (tx.get_field("VM", vm, "current_operations") or _holds_disks(tx, vm)):
                # a start began meanwhile: it reads the drive as it was, so this change must not land
                raise XenAPIFailure("OTHER_OPERATION_IN_PROGRESS", "VM", vm)
            tx.set_fields("VBD", vbd, {"VDI": vdi, "empty": vdi == NULL_REF})

    def check_resources(self, tx: Transaction, vm: str, record: dict[str, Any]) -> None:
        if not tx.get_field("host", self._host, "enabled"):  # host.disable: no new VMs here
            raise XenAPIFailure("HOST_DISABLED", self._host)
        if record["memory_static_max"] < MIB:  # QEMU's least (the memory rules allow a VM of 0 bytes)
            raise XenAPIFailure("VM_MEMORY_SIZE_TOO_LOW", vm)
        needed = record["memory_static_max"] + VM_OVERHEAD_BYTES
        free = self._free_memory(tx)
        if needed > free:
            raise XenAPIFailure("HOST_NOT_ENOUGH_FREE_MEMORY", needed, max(free, 0))
        for vbd in record["VBDs"]:
            vdi = tx.get_field("VBD", vbd, "VDI")
            if vdi == NULL_REF or not tx.exists("VDI", vdi) or tx.get_field("VDI", vdi, "sharable"):
                continue
            for other in tx.get_field("VDI", vdi, "VBDs"):
                owner = tx.get_field("VBD", other, "VM")
                if owner != vm and tx.exists("VM", owner) and _holds_disks(tx, owner):
                    raise XenAPIFailure("VDI_IN_USE", vdi, "start")

    def assert_can_boot(self, vm: str) -> None:
        """What VM.start checks before it boots the VM (templates, memory, disks), claiming nothing."""
        with self._db.read() as tx:
            record = tx.get_record("VM", tx.check("VM", vm))
            if record["is_a_template"]:
                raise XenAPIFailure("VM_IS_TEMPLATE", vm)
            self.check_resources(tx, vm, record)
            spec = self.spec(tx, vm, record)
        contained_disks(spec)

    def free_memory(self) -> int:
        """Bytes a VM may still claim on this host: what VM.start checks (host.compute_free_memory)."""
        with self._db.read() as tx:
            return self._free_memory(tx)

    def _free_memory(self, tx: Transaction) -> int:
        metrics = tx.get_field("host", self._host, "metrics")
        total = tx.get_field("host_metrics", metrics, "memory_total")
        # Running VMs, and VMs being started (booked in their claim).
        booked = set(tx.get_field("host", self._host, "resident_VMs"))
        booked.discard(tx.get_field("host", self._host, "control_domain"))  # the host's own use is reserved
        booked.update(tx.find("VM", "scheduled_to_be_resident_on", self._host))
        used = sum(tx.get_field("VM", vm, "memory_static_max") + VM_OVERHEAD_BYTES for vm in booked)
        return int(total) - HOST_RESERVE_BYTES - int(used)

    def _record_state(self, vm: str, state: str, domid: int = -1) -> None:
        with self._db.write() as tx:
            self._apply_state(tx, vm, state, domid)

    def _apply_state(self, tx: Transaction, vm: str, state: str, domid: int = -1) -> None:
        if not tx.exists("VM", vm):
            return
        resident = self._host if state in ("Running", "Paused") else NULL_REF
        tx.set_fields("VM", vm, {"power_state": state, "resident_on": resident, "domid": domid})
        consoles.sync(tx, vm, state, self._console_base)
        metrics = tx.get_field("VM", vm, "metrics")
        if tx.exists("VM_metrics", metrics):
            values: dict[str, Any] = {"state": [state.lower()], "last_updated": now()}
            if state == "Running" and domid >= 0:
                values["start_time"] = now()
            tx.set_fields("VM_metrics", metrics, values)
            self._record_vcpus(tx, vm, state)
        self._update_host_memory(tx)

    def _record_vcpus(self, tx: Transaction, vm: str, state: str) -> None:
        """VM_metrics.VCPUs_number: the domain's vCPUs while it exists, 0 once halted (as xapi
        resets a halted VM's metrics); a suspended VM keeps the count it will resume with."""
        metrics = tx.get_field("VM", vm, "metrics")
        if state == "Suspended" or not tx.exists("VM_metrics", metrics):
            return
        vcpus = max(tx.get_field("VM", vm, "VCPUs_at_startup"), 1) if state in ("Running", "Paused") else 0
        tx.set_fields("VM_metrics", metrics, {"VCPUs_number": vcpus})

    def _update_host_memory(self, tx: Transaction) -> None:
        host_metrics = tx.get_field("host", self._host, "metrics")
        total = tx.get_field("host_metrics", host_metrics, "memory_total")
        free = self._free_memory(tx) + HOST_RESERVE_BYTES
        tx.set_fields("host_metrics", host_metrics, {"memory_free": min(max(free, 0), total)})

    # -- operations -------------------------------------------------------------------------

    def start(self, vm: str, paused: bool, task: str | None = None) -> None:
        with self._operation(vm, "start", ("Halted",), reserve=True, task=task) as record:
            with self._db.read() as tx:
                spec = self.spec(tx, vm, record)
            contained_disks(spec)
            domid = self.driver.start(spec, paused)
            state = "Paused" if paused else "Running"
            if record["start_delay"]:
                self._record_state(vm, state, domid)  # Running during the delay, as in xapi
                self._delay(record, "start_delay")
            else:
                record.settle(state, domid)

    def resume(self, vm: str, paused: bool) -> None:
        with self._operation(vm, "resume", ("Suspended",), reserve=True) as record:
            with self._db.read() as tx:
                spec = self.spec(tx, vm, record)
                suspend_vdi = record["suspend_VDI"]
                if not tx.exists("VDI", suspend_vdi):
                    raise XenAPIFailure("VDI_MISSING", NULL_REF, suspend_vdi)
                vdi = tx.get_record("VDI", suspend_vdi)
                state_file = self._storage.attached_lun(tx, vdi["SR"]).image_path(vdi["location"])
            contained_disks(spec)
            domid = self.driver.start(spec, paused, restore_from=state_file)
            self._record_state(vm, "Paused" if paused else "Running", domid)
            self._drop_suspend_vdi(vm, suspend_vdi)

    def clean_shutdown(self, vm: str, timeout: float = DEFAULT_CLEAN_SHUTDOWN_S, task: str | None = None) -> None:
        with self._operation(vm, "clean_shutdown", ("Running",), task=task) as record:
            self._press_until_halted(vm, record, timeout)
            self._record_state(vm, "Halted")
            self._delay(record, "shutdown_delay")

    def hard_shutdown(self, vm: str, task: str | None = None) -> None:
        self._end_delay(vm)
        with self._operation(vm, "hard_shutdown", ("Running", "Paused", "Suspended"), task=task) as record:
            self._power_off(vm, record)

    def shutdown(self, vm: str, task: str | None = None) -> None:
        """Clean shutdown within shutdown_delay (or the default timeout), then hard."""
        with self._operation(vm, "shutdown", ("Running", "Paused", "Suspended"), task=task) as record:
            if record["power_state"] == "Running":
                timeout = float(record["shutdown_delay"]) or DEFAULT_CLEAN_SHUTDOWN_S
                with contextlib.suppress(XenAPIFailure):
                    self._press_until_halted(vm, record, timeout)
            self._power_off(vm, record)

    def _power_off(self, vm: str, record: _Claim) -> None:
        """The hard end of a shutdown: no domain (or no memory image) left, Halted, shutdown_delay."""
        if record["power_state"] == "Suspended":
            self._drop_suspend_vdi(vm, record["suspend_VDI"])
        else:
            self.driver.hard_stop(record["uuid"])
        self._record_state(vm, "Halted")
        self._delay(record, "shutdown_delay")

    def clean_reboot(self, vm: str) -> None:
        """The guest shuts down through ACPI and boots again (HVM guests have no reboot request)."""
        with self._operation(vm, "clean_reboot", ("Running",)) as record:
            self._press_until_halted(vm, record, DEFAULT_CLEAN_SHUTDOWN_S)
            self._record_state(vm, "Halted")
            with self._db.read() as tx:
                spec = self.spec(tx, vm, record)
            contained_disks(spec)
            self._record_state(vm, "Running", self.driver.start(spec, False))

    def hard_reboot(self, vm: str) -> None:
        with self._operation(vm, "hard_reboot", ("Running", "Paused")) as record:
            self.driver.reset(record["uuid"])
            if record["power_state"] == "Paused":
                self.driver.unpause(record["uuid"])
            self._record_state(vm, "Running", record["domid"])

    def pause(self, vm: str) -> None:
        with self._operation(vm, "pause", ("Running",)) as record:
            self.driver.pause(record["uuid"])
            self._record_state(vm, "Paused", record["domid"])

    def unpause(self, vm: str) -> None:
        with self._operation(vm, "unpause", ("Paused",)) as record:
            self.driver.unpause(record["uuid"])
            self._record_state(vm, "Running", record["domid"])

    def suspend(self, vm: str) -> None:
        """Save the guest's memory to a new suspend VDI; no QEMU is left running."""
        with self._operation(vm, "suspend", ("Running", "Paused")) as record:
            self.save_memory(vm, record, owner=vm)
            self._record_state(vm, "Suspended")

    def migrate(self, vm: str, op: str, task: str | None = None) -> MigrationReport:
        """Live-migrate a running or paused VM into a new QEMU on this host (xapi's localhost
        migration). Its memory is booked a second time while the claim lasts: both QEMUs run
        until the guest has moved (HOST_NOT_ENOUGH_FREE_MEMORY otherwise). A failure at any step
        leaves the guest running in its old process (VM_MIGRATE_FAILED)."""
        with self._operation(vm, op, ("Running", "Paused"), reserve=True, task=task) as record:
            try:
                report = self.driver.migrate(record["uuid"])
            except DomainError as exc:
                raise XenAPIFailure("VM_MIGRATE_FAILED", vm, self._host, self._host, exc.message) from exc
            with self._db.write() as tx:  # the same state in a new process: only the domid changes
                tx.set_fields("VM", vm, {"domid": report.domid})
            return report

    def power_state_reset(self, vm: str) -> None:
        """Halted in the database (xapi's recovery after a lost host), refused while its QEMU still runs.

        A suspended VM's memory image goes with it, as hard_shutdown discards it.
        """
        with self._operation(vm, "power_state_reset", ("Halted", "Running", "Paused", "Suspended")) as record:
            if record["is_control_domain"]:
                raise XenAPIFailure("CANNOT_RESET_CONTROL_DOMAIN", vm)
            if record["uuid"] in self.driver.running():
                raise XenAPIFailure("DOMAIN_EXISTS", vm)
            if record["suspend_VDI"] != NULL_REF:
                self._drop_suspend_vdi(vm, record["suspend_VDI"])
            record.settle("Halted")

    def save_memory(self, vm: str, record: dict[str, Any], owner: str | None) -> str:
        """End the claimed, running VM's domain, its memory saved to a new suspend VDI, made the
        ``suspend_VDI`` of ``owner`` in the same write (None: the caller's next write gives it to
        a VM it makes, a checkpoint); the VDI."""
        with self._db.read() as tx:
            sr = self._suspend_sr(tx, record)
            lun = self._storage.attached_lun(tx, sr)
        vdi_uuid = str(uuidlib.uuid4())
        location = new_location(vdi_uuid, image_format({"type": "raw"}))
        path = lun.image_path(location)
        try:
            self.driver.suspend(record["uuid"], path)
            size = path.stat().st_size
            with self._db.write() as tx:
                vdi = tx.create(
                    "VDI",
                    {
                        "uuid": vdi_uuid,
                        "name_label": f"Suspend image of {record['name_label']}",
                        "name_description": "Memory of a suspended VM",
                        "SR": sr,
                        "type": "suspend",
                        "virtual_size": size,
                        "physical_utilisation": path.stat().st_blocks * 512,
                        "location": location,
                        "managed": True,
                        "sm_config": {"type": "raw"},
                    },
                )
                lun.write_vdi(lun_record(tx, vdi))
                if owner is not None:
                    tx.set_fields("VM", owner, {"suspend_VDI": vdi})
        except BaseException:
            path.unlink(missing_ok=True)
            lun.remove_vdi(vdi_uuid)
            raise
        return str(vdi)

    def restore(self, vm: str, record: dict[str, Any], state_file: Path, paused: bool) -> None:
        """Start the claimed VM's domain again from the memory image ``state_file``."""
        with self._db.read() as tx:
            spec = self.spec(tx, vm, record)
        contained_disks(spec)
        self._record_state(
            vm, "Paused" if paused else "Running", self.driver.start(spec, paused, restore_from=state_file)
        )

    def _suspend_sr(self, tx: Transaction, record: dict[str, Any]) -> str:
        """Where a suspend image goes: the VM's suspend_SR, the pool's, or its first disk's SR."""
        candidates = [record["suspend_SR"], tx.get_field("pool", self._pool, "suspend_image_SR")]
        for vbd in record["VBDs"]:
            vdi = tx.get_field("VBD", vbd, "VDI")
            if tx.exists("VDI", vdi):
                candidates.append(tx.get_field("VDI", vdi, "SR"))
        for sr in candidates:
            if tx.exists("SR", sr):
                with contextlib.suppress(XenAPIFailure):
                    self._storage.attached_lun(tx, sr)
                    return str(sr)
        raise XenAPIFailure("VM_NO_SUSPEND_SR", record["uuid"])

    def _drop_suspend_vdi(self, vm: str, vdi: str) -> None:
        with self._db.read() as tx:
            record = tx.get_record("VDI", vdi) if tx.exists("VDI", vdi) else None
            lun = self._storage.attached_lun(tx, record["SR"]) if record is not None else None
        if record is not None and lun is not None:
            lun.remove_vdi(record["uuid"])
            lun.image_path(record["location"]).unlink(missing_ok=True)
        with self._db.write() as tx:
            if record is not None and tx.exists("VDI", vdi):
                tx.destroy("VDI", vdi)
            tx.set_fields("VM", vm, {"suspend_VDI": NULL_REF})

    def _press_until_halted(self, vm: str, record: dict[str, Any], timeout: float) -> None:
        if not self.driver.clean_shutdown(record["uuid"], timeout, press_interval=BUTTON_RETRY_S):
            raise XenAPIFailure("VM_SHUTDOWN_TIMEOUT", vm, str(timeout))

    # -- the driver's news, and start-up ---------------------------------------------------

    def _halted_by_itself(self, uuid: str, reason: str) -> None:
        """A guest powered off, crashed or was killed outside an operation: record it as Halted."""
        with self._db.read() as tx:
            refs = tx.find("VM", "uuid", uuid)
            if not refs:
                return
            vm = refs[0]
            busy = bool(tx.get_field("VM", vm, "current_operations"))
            state = tx.get_field("VM", vm, "power_state")
        if busy or state not in ("Running", "Paused"):
            return  # the operation in progress records the outcome itself
        log.info("VM %s stopped by itself (%s); it is Halted now", uuid, reason)
        self._record_state(vm, "Halted")

    def stop_users(self, sr: str) -> list[str]:
        """Hard-stop every VM with a disk on ``sr`` whatever it is doing (its SR was fenced: its
        writes would corrupt another pool's data); the VMs stopped, as ``name (uuid)``."""
        with self._db.read() as tx:
            users = {
                tx.get_field("VBD", vbd, "VM")
                for vdi in tx.get_field("SR", sr, "VDIs")
                for vbd in tx.get_field("VDI", vdi, "VBDs")
            }
            running = {
                vm: tx.get_record("VM", vm)
                for vm in users
                if tx.exists("VM", vm) and tx.get_field("VM", vm, "power_state") in ("Running", "Paused")
            }
        stopped = []
        for vm, record in running.items():
            try:
                self.driver.hard_stop(record["uuid"])
            except FarsideError as exc:
                log.error("fence: VM %s could not be stopped: %s", record["uuid"], exc.describe())
                continue
            with self._db.write() as tx:
                self._apply_state(tx, vm, "Halted")
            stopped.append(f"{record['name_label']} ({record['uuid']})")
        return stopped

    def reconcile(self) -> None:
        """At server start: reattach VMs whose QEMU still runs; VMs whose QEMU is gone are Halted.

        One transaction whatever the pool's size: a DR site may hold thousands of VMs.
        """
        alive = self.driver.running()
        with self._db.read() as tx:
            dom0 = tx.get_field("host", self._host, "control_domain")
            recorded = {
                tx.get_field("VM", ref, "uuid"): ref
                for state in ("Running", "Paused")
                for ref in tx.find("VM", "power_state", state)
                if ref != dom0  # no QEMU: it runs as long as the host does
            }
            for uuid in alive:
                for ref in tx.find("VM", "uuid", uuid):
                    recorded[uuid] = ref
        with self._db.read() as tx:
            orphans = [uuid for uuid in alive if not tx.find("VM", "uuid", uuid)]
        for uuid in orphans:
            # Its VM was destroyed while it ran (or by hand): nothing can manage it any more.
            log.warning("QEMU %d runs for VM %s, which no longer exists; stopping it", alive[uuid], uuid)
            with contextlib.suppress(FarsideError):
                self.driver.reattach(uuid)
            self.driver.hard_stop(uuid)
        states: dict[str, tuple[str, int]] = {}
        for uuid, vm in recorded.items():
            if uuid in alive:
                self.driver.reattach(uuid)
                state = "Paused" if self.driver.state(uuid) is DomainState.PAUSED else "Running"
                states[vm] = (state, alive[uuid])
                log.info("VM %s reattached (%s, pid %d)", uuid, state, alive[uuid])
            else:
                states[vm] = ("Halted", -1)
                log.warning("VM %s was running but its QEMU is gone; it is Halted now (disks untouched)", uuid)
        with self._db.write() as tx:
            for vm, (state, domid) in states.items():
                resident = self._host if state != "Halted" else NULL_REF
                tx.set_fields("VM", vm, {"power_state": state, "resident_on": resident, "domid": domid})
                consoles.sync(tx, vm, state, self._console_base)  # consoles do not outlive a server
                self._record_vcpus(tx, vm, state)
            # A halted VM has no domain (xapi: -1), whatever an older server or a record left.
            tx.reset_fields("VM", {"domid": -1}, where=("power_state", "Halted"))
            # No operation outlives its server: a start it was in (say, killed in its start_delay)
            # no longer books this host's memory or the VM's disks.
            for vm in tx.find("VM", "scheduled_to_be_resident_on", self._host):
                log.info("VM %s: the start its server was in when it stopped is over", tx.get_field("VM", vm, "uuid"))
                tx.set_fields("VM", vm, {"scheduled_to_be_resident_on": NULL_REF})
            self._update_host_memory(tx)

    def serial_log(self, uuid: str) -> Path:
        return self.driver.serial_log(uuid)

    def forget(self, uuid: str) -> None:
        """After VM.destroy: what the driver kept of the VM (its run directory, serial log) goes,
        so that no later reader (or VM of the same uuid, recovered again) sees its output."""
        try:
            self.driver.forget(uuid)
        except (FarsideError, OSError) as exc:
            log.warning("VM %s destroyed, but its run directory was not removed: %s", uuid, exc)

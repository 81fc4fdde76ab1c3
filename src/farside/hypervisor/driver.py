"""The hypervisor driver contract: what the pool server asks of whatever runs its VMs.

Modelled on nova's ``ComputeDriver``: one plain base class whose required methods raise
``NotImplementedError``, a few generic defaults written once on top of them (``clean_shutdown``,
``shutdown``, ``wait_halted``, ``read_serial``), and a ``capabilities`` mapping that callers read
instead of probing. The QEMU driver (``farside.hypervisor.qemu.QemuDriver``) is the one real
implementation; a test double needs only the required methods.

A *domain* is one running instance of a VM, named by the VM's uuid; its domid is the QEMU pid.
Every method is synchronous and thread-safe: the server calls them from worker threads
(``asyncio.to_thread``), never from its event loop. The database, the power-state rules
(``VM_BAD_POWER_STATE``) and XenAPI's clean/hard semantics live above this layer.
"""

from __future__ import annotations

import enum
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

from farside.hypervisor.errors import DomainError, DomainNotFound, VdiMissing
from farside.hypervisor.migration import MigrationReport, Transport

# How long a clean shutdown waits between presses of the power button: a press before the guest
# has enabled its power button is dropped, not queued (FACTS.md), so a single press can be lost.
DEFAULT_PRESS_INTERVAL_S = 1.0
DEFAULT_SERIAL_READ_BYTES = 64 * 1024

# ``on_halted(uuid, reason)``: see ``Driver.on_halted``.
HaltedCallback = Callable[[str, str], None]


@dataclass(frozen=True)
class DiskSpec:
    """One disk of a VM, from its VBD and VDI.

    Args:
        vdi_uuid: the VDI, named in errors (``VDI_MISSING``).
        path: the image file.
        format: ``"qcow2"`` or ``"raw"``.
        read_only: open the image read-only (a CD is always read-only).
        userdevice: the VBD's position: 0-3 are the IDE slots (hda..hdd), higher ones virtio.
        cdrom: a CD drive rather than a disk.
        bootable: boot from this one first.
    """

    vdi_uuid: str
    path: Path
    format: str
    read_only: bool
    userdevice: int
    cdrom: bool = False
    bootable: bool = False


@dataclass(frozen=True)
class NicSpec:
    """One network interface, from a VIF.

    Args:
        mac: ``aa:bb:cc:dd:ee:ff``.
        bridge: the host bridge of the VIF's network; when no such bridge exists on the host the
            NIC joins an isolated user-mode network instead.
        device: the VIF's device number (order on the PCI bus).
    """

    mac: str
    bridge: str
    device: int


@dataclass(frozen=True)
class VMSpec:
    """Everything a driver needs to start a VM."""

    uuid: str
    name: str
    memory_bytes: int
    vcpus: int
    disks: list[DiskSpec] = field(default_factory=list)
    nics: list[NicSpec] = field(default_factory=list)
    # The userdevices of empty CD drives: a drive with no disc, for a later ``change_medium``.
    cd_drives: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings)."""
        data = asdict(self)
        for disk in data["disks"]:
            disk["path"] = str(disk["path"])
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VMSpec:
        """The inverse of ``to_json``."""
        return cls(
            uuid=data["uuid"],
            name=data["name"],
            memory_bytes=int(data["memory_bytes"]),
            vcpus=int(data["vcpus"]),
            disks=[DiskSpec(**{**d, "path": Path(d["path"])}) for d in data["disks"]],
            nics=[NicSpec(**n) for n in data["nics"]],
            cd_drives=[int(d) for d in data.get("cd_drives", [])],
        )


@dataclass(frozen=True)
class DiskStats:
    """A disk's I/O since its domain started: bytes and requests read and written."""

    read_bytes: int
    write_bytes: int
    read_ops: int
    write_ops: int


@dataclass(frozen=True)
class NicStats:
    """A NIC's traffic since its domain started, as the guest sees it (received, sent)."""

    rx_bytes: int
    tx_bytes: int


@dataclass(frozen=True)
class DomainStats:
    """Counters of one domain at one moment, for the metrics sampler.

    Args:
        vcpu_seconds: CPU time each vCPU has used, in seconds (counters).
        memory_bytes: the guest's RAM.
        disks: by the disk's ``userdevice``.
        nics: by the NIC's device number; only NICs whose traffic the host can count.
    """

    vcpu_seconds: tuple[float, ...]
    memory_bytes: int
    disks: Mapping[int, DiskStats] = field(default_factory=dict)
    nics: Mapping[int, NicStats] = field(default_factory=dict)


class DomainState(enum.Enum):
    """What a domain is doing, in XenAPI's power-state words (Suspended is the API's: no domain)."""

    RUNNING = "Running"
    PAUSED = "Paused"
    HALTED = "Halted"


class Driver:
    """Runs VMs on this host. Subclasses implement every method that raises NotImplementedError.

    Attributes:
        capabilities: what this driver can do. Keys every driver sets:
            ``kvm`` (hardware acceleration in use), ``suspend`` (``suspend`` and
            ``start(restore_from=...)`` work), ``live_migration`` (``migrate`` works),
            ``acpi_power_button`` (``press_power_button``
            reaches the guest), ``reattach`` (domains survive the server and are found again),
            ``live_snapshot`` (``backup_disks`` copies a running domain's disks).
        on_halted: called as ``on_halted(uuid, reason)`` when a domain stops by itself: the guest
            powered off (``"guest-shutdown"``), QEMU was signalled (``"host-signal"``, ``"killed"``)
            or died (``"crashed"``). Not called for ``hard_stop`` and ``suspend``, whose callers
            already know. It runs on a thread of the driver's, one call at a time, and may call
            the driver.
    """

    capabilities: Mapping[str, bool] = {
        "kvm": False,
        "suspend": False,
        "live_migration": False,
        "acpi_power_button": False,
        "reattach": False,
        "live_snapshot": False,
    }

    def __init__(self) -> None:
        self.on_halted: HaltedCallback | None = None

    # -- required --------------------------------------------------------------------------------

    def start(self, spec: VMSpec, paused: bool = False, restore_from: Path | None = None) -> int:
        """Start a domain for ``spec``.

        Args:
            spec: the VM.
            paused: leave it paused (XenAPI ``start_paused``); otherwise it runs.
            restore_from: a suspend image written by ``suspend``: the guest continues from it
                instead of booting.

        Returns:
            The domid.

        Raises:
            VdiMissing: a disk's image file does not exist; nothing was started.
            DomainError: the domain already runs, or it could not be started; no process is left.
        """
        raise NotImplementedError

    def state(self, uuid: str) -> DomainState:
        """The domain's state; ``HALTED`` when none runs."""
        raise NotImplementedError

    def pause(self, uuid: str) -> None:
        """Stop the vCPUs. Pausing a paused domain does nothing.

        Raises:
            DomainNotFound: no domain runs for ``uuid``.
        """
        raise NotImplementedError

    def unpause(self, uuid: str) -> None:
        """Let the vCPUs run again. Unpausing a running domain does nothing.

        Raises:
            DomainNotFound: no domain runs for ``uuid``.
        """
        raise NotImplementedError

    def press_power_button(self, uuid: str) -> None:
        """Press the ACPI power button once. The guest decides what to do; see ``clean_shutdown``.

        Raises:
            DomainNotFound: no domain runs for ``uuid``.
        """
        raise NotImplementedError

    def hard_stop(self, uuid: str) -> None:
        """Stop the domain now, as pulling the plug does. Stopping a halted domain does nothing."""
        raise NotImplementedError

    def reset(self, uuid: str) -> None:
        """Reset the machine (XenAPI ``hard_reboot``): the guest boots again in the same domain.

        Raises:
            DomainNotFound: no domain runs for ``uuid``.
        """
        raise NotImplementedError

    def suspend(self, uuid: str, state_path: Path) -> None:
        """Save the domain's memory and device state to ``state_path``, then end the domain.

        ``start(spec, restore_from=state_path)`` continues the guest where it was.

        Raises:
            DomainNotFound: no domain runs for ``uuid``.
            DomainError: saving failed; the domain is left as it was.
        """
        raise NotImplementedError

    def migrate(self, uuid: str, transport: Transport | None = None) -> MigrationReport:
        """Move the running (or paused) domain live into a new process, which takes the same disk
        images, serial log and devices; the guest runs on, and the old process ends.

        Args:
            uuid: the VM.
            transport: carries the migration stream; this host's ``LocalTransport`` by default.

        Returns:
            The new domid and what was measured.

        Raises:
            DomainNotFound: no domain runs for ``uuid``.
            DomainError: the migration failed at some step; the domain runs on in its old process
                as before, and no new process is left.
        """
        raise NotImplementedError

    def backup_disks(self, uuid: str, targets: Mapping[int, tuple[Path, str]]) -> float:
        """Copy the running domain's disks, by userdevice, into ``targets`` (a new, empty image of
        the same virtual size, and its format, for each), all as they were at one instant, while
        the guest runs on; returns once every copy is complete.

        The disks are read through the hypervisor's block layer, never as files under a writing
        guest. Returns the seconds the guest's disk I/O was held to fix that instant.

        Raises:
            DomainNotFound: no domain runs for ``uuid``.
            DomainError: a copy failed; the domain runs on, untouched.
        """
        raise NotImplementedError

    def change_medium(self, uuid: str, userdevice: int, disk: DiskSpec | None) -> None:
        """Put ``disk`` (a CD's image) in the CD drive at ``userdevice`` of a running domain, in
        place of what it held; ``None`` ejects, leaving the drive empty.

        Raises:
            DomainNotFound: no domain runs for ``uuid``.
            DomainError: the domain has no CD drive there, or refused the change.
        """
        raise NotImplementedError

    def running(self) -> dict[str, int]:
        """Every domain alive on this host that belongs to this driver: uuid -> domid.

        This is how a restarted server finds the domains that kept running without it.
        """
        raise NotImplementedError

    def reattach(self, uuid: str) -> None:
        """Take control of a domain that runs but was started by an earlier server process.

        Raises:
            DomainNotFound: no domain runs for ``uuid``.
        """
        raise NotImplementedError

    def vnc_socket(self, uuid: str) -> socket.socket:
        """A new connection to the running domain's VNC console (an RFB server that needs no auth:
        the caller authorises whoever it passes the socket to).

        Raises:
            DomainNotFound: no domain runs for ``uuid``.
        """
        raise NotImplementedError

    def serial_log(self, uuid: str) -> Path:
        """The file that holds the serial output of the domain's current or last boot (also after
        it halted; a restore from a suspend image is the same boot)."""
        raise NotImplementedError

    def stats(self, uuid: str) -> DomainStats:
        """The domain's counters now; cheap enough to call every few seconds per domain.

        Raises:
            DomainNotFound: no domain runs for ``uuid``.
        """
        raise NotImplementedError

    def forget(self, uuid: str) -> None:
        """Remove what is kept of a VM that no longer exists (its serial output).

        Raises:
            DomainError: a domain of the VM runs.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Let go of every domain, leaving them running: VMs outlive the server."""
        raise NotImplementedError

    # -- generic defaults ------------------------------------------------------------------------

    def wait_halted(self, uuid: str, timeout: float) -> bool:
        """Wait until no domain runs for ``uuid``; True if that happened within ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while self.state(uuid) is not DomainState.HALTED:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def clean_shutdown(self, uuid: str, timeout: float, press_interval: float = DEFAULT_PRESS_INTERVAL_S) -> bool:
        """Ask the guest to power off with the power button; True once it has, within ``timeout``.

        The button is pressed again every ``press_interval`` seconds: a press that comes before
        the guest listens for it is lost. A guest that ignores the button is left running.
        """
        deadline = time.monotonic() + timeout
        while True:
            wait = max(0.0, min(press_interval, deadline - time.monotonic()))
            try:
                self.press_power_button(uuid)
            except DomainNotFound:
                return True
            except DomainError:
                # The domain may be going down as the button is pressed.
                if self.wait_halted(uuid, wait):
                    return True
                raise
            if self.wait_halted(uuid, wait):
                return True
            if time.monotonic() >= deadline:
                return False

    def shutdown(self, uuid: str, timeout: float) -> bool:
        """A clean shutdown, and a hard stop if the guest has not gone within ``timeout`` s.

        Returns:
            True if the guest shut down cleanly, False if it had to be stopped hard.
        """
        if self.clean_shutdown(uuid, timeout):
            return True
        self.hard_stop(uuid)
        return False

    def read_serial(self, uuid: str, max_bytes: int = DEFAULT_SERIAL_READ_BYTES) -> bytes:
        """The last ``max_bytes`` of the domain's serial output (empty if it never wrote any)."""
        path = self.serial_log(uuid)
        try:
            with open(path, "rb") as f:
                size = f.seek(0, 2)
                f.seek(max(0, size - max_bytes))
                return f.read()
        except FileNotFoundError:
            return b""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = [
    "DiskSpec",
    "DiskStats",
    "DomainError",
    "DomainNotFound",
    "DomainState",
    "DomainStats",
    "Driver",
    "HaltedCallback",
    "NicSpec",
    "NicStats",
    "VMSpec",
    "VdiMissing",
]

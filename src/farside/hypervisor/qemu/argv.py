"""QEMU's command line for one VM: a pure function of the spec, pinned by golden files.

No I/O here: what the host has (KVM, the descriptors the driver opened) is passed in. Every value
that goes into one of QEMU's ``key=value,...`` option strings passes through ``opt()``, which
doubles commas (QEMU's escape for them) and refuses control characters, which the option syntax
cannot carry. Values that QEMU takes verbatim (``-uuid``) are never escaped, as escaping would
change them.

QEMU opens no host path of its own: it runs as an unprivileged user that owns no files, under
seccomp (``-sandbox``: no exec, no privilege change, no resource control), and gets everything
it needs as a descriptor the driver opened (``Fds``) or in its working directory, the VM's run
directory, which only it (and root) may enter:

- Each disk is an inherited descriptor in a fd set of its own (``-add-fd``), opened by the
  ``file`` driver as ``/dev/fdset/N``; QEMU's image locks work on it as on a path. qcow2 gets
  ``"backing": null``, so a backing file named in an image's header is never opened. (A qcow2
  ``data-file`` cannot be nulled in 7.2, ``data-file`` takes only a reference: an image naming one
  fails to open, as the QEMU user may open no host file; the storage layer refuses such images.)
  ``-blockdev`` is JSON, so a name is never parsed as a protocol (``nbd:``, ``json:``).
- The serial log is an inherited descriptor too (``append=on``: a restore or a restart keeps the
  log, and the driver can rotate it by passing a new one over QMP).
- QMP is a socket *client* of the driver with ``reconnect=1``, reached by a path relative to the
  working directory: the driver listens on a fixed path, so a restarted server gets every running
  VM back within a second (FACTS.md), and QEMU needs no right on the run directory's parents.
- The VNC display (``-vnc none``) listens nowhere, no TCP port and no socket path: for each
  console client the driver passes QEMU one end of a socket pair over QMP (``add_client``), and
  the pool server proxies the other end to an authorised client (api/consoles.py).
- There is no ``-pidfile``: QEMU could only write it into a directory it may write to; the driver
  writes the pid instead.
- A NIC whose bridge exists on the host gets a tap that the driver created, put on the bridge and
  passes as a descriptor (``-netdev tap,fd=N``: QEMU needs neither ``/dev/net/tun`` nor
  CAP_NET_ADMIN); the tap vanishes with the last descriptor, QEMU's. Otherwise the NIC joins a
  user-mode network with ``restrict=on``: isolated, no way out to the host.

Other choices:

- ``-S`` always: QEMU starts with its vCPUs stopped, and the driver lets them run (``cont``) once
  it holds the QMP connection, so no event of a new domain is missed.
- Disks 0-3 sit on the two IDE buses as hda..hdd (the places XenServer's emulated disks take);
  higher userdevices are virtio-blk. The bootable disk gets boot index 0, the rest follow in
  userdevice order.
"""

from __future__ import annotations

import json
import math
import re
import uuid as uuidlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from farside.hypervisor.driver import DiskSpec, NicSpec, VMSpec

MIB = 1024 * 1024
MACHINE = "pc"
# The display the VNC console shows; 4 MiB of video memory is plenty for text and 1024x768.
VGA = "VGA,vgamem_mb=4"
# The per-VM run directory (``<run_root>/<uuid>/``, QEMU's working directory) holds these files.
PID_FILE = "qemu.pid"
# During a live migration, the pid of the VM's other QEMU: the destination until the guest has
# moved to it (PID_FILE names the source), the source from then until it has exited.
MIGRATION_PID_FILE = "qemu.migration.pid"
QMP_SOCKET = "qmp.sock"
# A live migration runs a second QEMU of the VM beside the first, in the same run directory: each
# process has a slot, which names its QMP socket and taps, and a migration moves to the other one.
QMP_SOCKETS = (QMP_SOCKET, "qmp.1.sock")
TAP_PREFIXES = ("tap", "tbp")
SERIAL_LOG = "serial.log"
SERIAL_ID = "ser0"
MONITOR_ID = "mon"
# QEMU 7.2 takes whole seconds; 1 is the shortest gap between its attempts to reach the driver.
QMP_RECONNECT_S = 1
# Seccomp on, and every optional group denied: QEMU needs none of them once started.
SANDBOX = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
IDE_SLOTS = 4
FORMATS = ("qcow2", "raw")
NIC_MODEL = "e1000"

# Linux network interface names hold at most 15 characters.
MAX_IFNAME = 15

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


@dataclass(frozen=True)
class Fds:
    """The descriptors a QEMU inherits (numbers in the QEMU process, as ``pass_fds`` keeps them).

    Args:
        serial: the serial log, open for appending.
        disks: each disk's image by ``userdevice``, open read-write (read-only for a read-only disk).
        taps: each bridged NIC's tap by device number.
    """

    serial: int
    disks: Mapping[int, int]
    taps: Mapping[int, int] = field(default_factory=dict)

    def all(self) -> list[int]:
        return [self.serial, *self.disks.values(), *self.taps.values()]


def opt(value: str, what: str = "value") -> str:
    """``value`` as it must appear inside a QEMU option string: commas doubled.

    Raises:
        ValueError: ``value`` is empty or holds a control character (a newline, a NUL, ...).
    """
    if not value:
        raise ValueError(f"{what} must not be empty")
    if _CONTROL.search(value):
        raise ValueError(f"{what} holds a control character QEMU's option syntax cannot take: {value!r}")
    return value.replace(",", ",,")


def verbatim(value: str, what: str) -> str:
    """``value`` for an argument QEMU takes as it is (no option syntax), checked the same way."""
    if not value or _CONTROL.search(value):
        raise ValueError(f"{what} must be non-empty without control characters: {value!r}")
    return value


def fdset_path(fd: int) -> str:
    """The name under which QEMU opens inherited descriptor ``fd`` (its fd set has the same number)."""
    return f"/dev/fdset/{fd}"


def build_argv(
    spec: VMSpec,
    *,
    fds: Fds,
    qemu: str = "qemu-system-x86_64",
    kvm: bool = False,
    incoming: bool = False,
    slot: int = 0,
) -> list[str]:
    """The full argv that starts ``spec`` in QEMU, run with the VM's run directory as its cwd.

    Args:
        spec: the VM.
        fds: the descriptors QEMU inherits for its serial log, disks and taps.
        qemu: the QEMU binary.
        kvm: use KVM instead of TCG (the caller checks that the host can).
        incoming: wait for a saved state (``-incoming defer``, then QMP ``migrate-incoming``).
        slot: which of the VM's two process slots (``QMP_SOCKETS``) this QEMU takes.

    Raises:
        ValueError: the spec cannot be expressed safely (a bad uuid, MAC, format, device number,
            a control character in a name, a disk without a descriptor).
    """
    uuid = _check_uuid(spec.uuid)
    if spec.vcpus < 1:
        raise ValueError(f"a VM needs at least one vCPU, not {spec.vcpus}")
    if spec.memory_bytes < MIB:
        raise ValueError(f"a VM needs at least 1 MiB of memory, not {spec.memory_bytes} bytes")
    argv = [
        verbatim(qemu, "the QEMU binary"),
        "-name", f"guest={opt(spec.name, 'the VM name')}",
        "-uuid", uuid,
        "-machine", MACHINE,
        "-accel", "kvm" if kvm else "tcg",
        "-m", str(math.ceil(spec.memory_bytes / MIB)),
        "-smp", str(spec.vcpus),
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        # A VNC server with no listener: the driver hands it each client over QMP (add_client).
        "-vnc", "none",
        "-device", VGA,
        "-sandbox", SANDBOX,
        "-S",
        "-chardev", f"socket,id={MONITOR_ID},path={QMP_SOCKETS[slot]},reconnect={QMP_RECONNECT_S}",
        "-mon", f"chardev={MONITOR_ID},mode=control",
        *_add_fd(fds.serial, "serial"),
        "-chardev", f"file,id={SERIAL_ID},path={fdset_path(fds.serial)},append=on",
        "-serial", f"chardev:{SERIAL_ID}",
    ]  # fmt: skip
    argv += _disks(spec.disks, fds.disks)
    argv += _empty_cd_drives(spec.cd_drives, {d.userdevice for d in spec.disks}, len(spec.disks))
    argv += _nics(spec.nics, fds.taps)
    if incoming:
        argv += ["-incoming", "defer"]
    return argv


def tap_name(uuid: str, device: int, slot: int = 0) -> str:
    """The host tap of a bridged NIC, like xapi's ``tap<domid>.<device>`` but known before start
    (``tbp...`` for slot 1: a migration's destination needs taps of its own while the source runs).

    Raises:
        ValueError: the name would be longer than Linux allows (device numbers above 999).
    """
    name = f"{TAP_PREFIXES[slot]}{uuid[:8]}.{device}"
    if len(name) > MAX_IFNAME or device < 0:
        raise ValueError(f"no tap name for NIC device {device}: at most {MAX_IFNAME} characters")
    return name


def bridged(spec: VMSpec, bridges: frozenset[str], slot: int = 0) -> list[tuple[int, str, str]]:
    """``(device, tap, bridge)`` for each NIC of ``spec`` whose bridge is on the host.

    Raises:
        ValueError: a bridge name holds a control character (it goes to ip(8)).
    """
    return [
        (n.device, tap_name(spec.uuid, n.device, slot), verbatim(n.bridge, "the bridge name"))
        for n in sorted(spec.nics, key=lambda n: n.device)
        if n.bridge in bridges
    ]


def _add_fd(fd: int, label: str) -> list[str]:
    if fd < 0:
        raise ValueError(f"not a file descriptor for {label}: {fd}")
    return ["-add-fd", f"fd={fd},set={fd},opaque={opt(label, 'the descriptor label')}"]


def _check_uuid(text: str) -> str:
    try:
        parsed = uuidlib.UUID(text)
    except ValueError:
        raise ValueError(f"not a uuid: {text!r}") from None
    if str(parsed) != text:
        raise ValueError(f"not a uuid in canonical form: {text!r}")
    return text


def _disks(disks: list[DiskSpec], fds: Mapping[int, int]) -> list[str]:
    seen = [d.userdevice for d in disks]
    if len(seen) != len(set(seen)):
        raise ValueError(f"two disks share a userdevice: {sorted(seen)}")
    boot_order = sorted(disks, key=lambda d: (not d.bootable, d.userdevice))
    argv: list[str] = []
    for disk in sorted(disks, key=lambda d: d.userdevice):
        if disk.userdevice not in fds:
            raise ValueError(f"no file descriptor for the image of VDI {disk.vdi_uuid}")
        argv += _disk(disk, fds[disk.userdevice], boot_order.index(disk))
    return argv


def _disk(disk: DiskSpec, fd: int, bootindex: int) -> list[str]:
    if disk.format not in FORMATS:
        raise ValueError(f"disk format must be one of {FORMATS}, not {disk.format!r}")
    if disk.userdevice < 0:
        raise ValueError(f"userdevice must not be negative: {disk.userdevice}")
    if disk.cdrom and disk.userdevice >= IDE_SLOTS:
        raise ValueError(f"a CD drive must be userdevice 0-{IDE_SLOTS - 1}, not {disk.userdevice}")
    node = f"vbd{disk.userdevice}"
    blockdev: dict[str, object] = {
        "driver": disk.format,
        "node-name": node,
        "read-only": disk.read_only or disk.cdrom,
        "file": {"driver": "file", "filename": fdset_path(fd)},
    }
    if disk.format == "qcow2":
        blockdev["backing"] = None  # never the backing file an image's header names
    if disk.userdevice < IDE_SLOTS:
        model = "ide-cd" if disk.cdrom else "ide-hd"
        bus, unit = divmod(disk.userdevice, 2)
        device = f"{model},drive={node},id={device_id(disk.userdevice)},bus=ide.{bus},unit={unit},bootindex={bootindex}"
    else:
        device = f"virtio-blk-pci,drive={node},id=disk{disk.userdevice},bootindex={bootindex}"
    return [*_add_fd(fd, f"vdi {disk.vdi_uuid}"), "-blockdev", json.dumps(blockdev), "-device", device]


def device_id(userdevice: int) -> str:
    """The qdev id of the drive at ``userdevice``, which QMP's tray and medium commands name."""
    return f"disk{userdevice}"


def _empty_cd_drives(drives: list[int], taken: set[int], first_bootindex: int) -> list[str]:
    """An IDE CD drive with no medium for each of ``drives``, for a disc inserted later over QMP;
    each is in the boot order after the disks, so a disc put in before a reboot boots."""
    argv: list[str] = []
    for n, device in enumerate(sorted(drives)):
        if device in taken or not 0 <= device < IDE_SLOTS:
            raise ValueError(f"an empty CD drive needs a free IDE slot 0-{IDE_SLOTS - 1}, not {device}")
        bus, unit = divmod(device, 2)
        argv += ["-device", f"ide-cd,id={device_id(device)},bus=ide.{bus},unit={unit},bootindex={first_bootindex + n}"]
    return argv


def _nics(nics: list[NicSpec], taps: Mapping[int, int]) -> list[str]:
    seen = [n.device for n in nics]
    if len(seen) != len(set(seen)):
        raise ValueError(f"two NICs share a device number: {sorted(seen)}")
    argv: list[str] = []
    for nic in sorted(nics, key=lambda n: n.device):
        if nic.device < 0:
            raise ValueError(f"a NIC's device number must not be negative: {nic.device}")
        if not _MAC.fullmatch(nic.mac):
            raise ValueError(f"not a MAC address: {nic.mac!r}")
        netdev = f"vif{nic.device}"
        if nic.device in taps:
            argv += ["-netdev", f"tap,id={netdev},fd={taps[nic.device]}"]
        else:
            argv += ["-netdev", f"user,id={netdev},restrict=on"]
        # romfile= (empty): no PXE option ROM, so the BIOS does not spend time on it.
        argv += ["-device", f"{NIC_MODEL},netdev={netdev},id=nic{nic.device},mac={nic.mac.lower()},romfile="]
    return argv

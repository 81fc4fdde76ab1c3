"""QEMU's command line for one VM: a pure function of the spec, pinned by golden files.

No I/O here: what the host has (its bridges, KVM) is passed in. Every value that goes into one of
QEMU's ``key=value,...`` option strings passes through ``opt()``, which doubles commas (QEMU's
escape for them) and refuses control characters, which the option syntax cannot carry. Values
that QEMU takes verbatim (``-pidfile``, ``-uuid``) are never escaped, as escaping would change them.

Choices that are not obvious from the argv:

- ``-S`` always: QEMU starts with its vCPUs stopped, and the driver lets them run (``cont``) once
  it holds the QMP connection, so no event of a new domain is missed.
- QMP is a socket *client* of the driver with ``reconnect=1``: the driver listens on a fixed path,
  so a restarted server gets every running VM back within a second (FACTS.md).
- Serial output is appended to a file (``append=on``), so a restore or a restart keeps the log and
  the driver can rotate it.
- Disks 0-3 sit on the two IDE buses as hda..hdd (the places XenServer's emulated disks take);
  higher userdevices are virtio-blk. The bootable disk gets boot index 0, the rest follow in
  userdevice order. ``-blockdev`` names the format and the file driver explicitly, so an image's
  name is never parsed as a protocol (``nbd:``, ``json:``).
- A NIC whose bridge exists on the host gets a tap, named by ``tap_name``, that QEMU creates (as
  root) and that vanishes with it; the driver puts it on the bridge before the vCPUs run (see
  ``bridged``). Otherwise the NIC joins a user-mode network with ``restrict=on``: isolated, no way
  out to the host.
"""

from __future__ import annotations

import math
import re
import uuid as uuidlib
from pathlib import Path

from farside.hypervisor.driver import DiskSpec, NicSpec, VMSpec

MIB = 1024 * 1024
MACHINE = "pc"
# The per-VM run directory (``<run_root>/<uuid>/``) holds these files.
PID_FILE = "qemu.pid"
QMP_SOCKET = "qmp.sock"
SERIAL_LOG = "serial.log"
SERIAL_ID = "ser0"
MONITOR_ID = "mon"
# QEMU 7.2 takes whole seconds; 1 is the shortest gap between its attempts to reach the driver.
QMP_RECONNECT_S = 1
IDE_SLOTS = 4
FORMATS = ("qcow2", "raw")
NIC_MODEL = "e1000"

# Linux network interface names hold at most 15 characters.
MAX_IFNAME = 15

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")


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


def build_argv(
    spec: VMSpec,
    *,
    run_dir: Path,
    qemu: str = "qemu-system-x86_64",
    kvm: bool = False,
    incoming: bool = False,
    bridges: frozenset[str] = frozenset(),
) -> list[str]:
    """The full argv that starts ``spec`` in QEMU.

    Args:
        spec: the VM.
        run_dir: its run directory, where the pid file, QMP socket and serial log live.
        qemu: the QEMU binary.
        kvm: use KVM instead of TCG (the caller checks that the host can).
        incoming: wait for a saved state (``-incoming defer``, then QMP ``migrate-incoming``).
        bridges: the bridges that exist on the host.

    Raises:
        ValueError: the spec cannot be expressed safely (a bad uuid, MAC, format, device number,
            or a control character in a name or path).
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
        "-S",
        "-pidfile", verbatim(str(run_dir / PID_FILE), "the pid file"),
        "-chardev",
        f"socket,id={MONITOR_ID},path={opt(str(run_dir / QMP_SOCKET), 'the QMP socket')},reconnect={QMP_RECONNECT_S}",
        "-mon", f"chardev={MONITOR_ID},mode=control",
        "-chardev", f"file,id={SERIAL_ID},path={opt(str(run_dir / SERIAL_LOG), 'the serial log')},append=on",
        "-serial", f"chardev:{SERIAL_ID}",
    ]  # fmt: skip
    argv += _disks(spec.disks)
    argv += _nics(uuid, spec.nics, bridges)
    if incoming:
        argv += ["-incoming", "defer"]
    return argv


def tap_name(uuid: str, device: int) -> str:
    """The host tap of a bridged NIC, like xapi's ``tap<domid>.<device>`` but known before start.

    Raises:
        ValueError: the name would be longer than Linux allows (device numbers above 999).
    """
    name = f"tap{uuid[:8]}.{device}"
    if len(name) > MAX_IFNAME or device < 0:
        raise ValueError(f"no tap name for NIC device {device}: at most {MAX_IFNAME} characters")
    return name


def bridged(spec: VMSpec, bridges: frozenset[str]) -> list[tuple[str, str]]:
    """``(tap, bridge)`` for each NIC of ``spec`` that ``build_argv`` puts on a host bridge."""
    return [
        (tap_name(spec.uuid, n.device), n.bridge)
        for n in sorted(spec.nics, key=lambda n: n.device)
        if n.bridge in bridges
    ]


def _check_uuid(text: str) -> str:
    try:
        parsed = uuidlib.UUID(text)
    except ValueError:
        raise ValueError(f"not a uuid: {text!r}") from None
    if str(parsed) != text:
        raise ValueError(f"not a uuid in canonical form: {text!r}")
    return text


def _disks(disks: list[DiskSpec]) -> list[str]:
    seen = [d.userdevice for d in disks]
    if len(seen) != len(set(seen)):
        raise ValueError(f"two disks share a userdevice: {sorted(seen)}")
    boot_order = sorted(disks, key=lambda d: (not d.bootable, d.userdevice))
    argv: list[str] = []
    for disk in sorted(disks, key=lambda d: d.userdevice):
        argv += _disk(disk, boot_order.index(disk))
    return argv


def _disk(disk: DiskSpec, bootindex: int) -> list[str]:
    if disk.format not in FORMATS:
        raise ValueError(f"disk format must be one of {FORMATS}, not {disk.format!r}")
    if disk.userdevice < 0:
        raise ValueError(f"userdevice must not be negative: {disk.userdevice}")
    if disk.cdrom and disk.userdevice >= IDE_SLOTS:
        raise ValueError(f"a CD drive must be userdevice 0-{IDE_SLOTS - 1}, not {disk.userdevice}")
    node = f"vbd{disk.userdevice}"
    read_only = "on" if disk.read_only or disk.cdrom else "off"
    path = opt(str(disk.path), f"the image of VDI {disk.vdi_uuid}")
    blockdev = f"driver={disk.format},node-name={node},read-only={read_only},file.driver=file,file.filename={path}"
    if disk.userdevice < IDE_SLOTS:
        model = "ide-cd" if disk.cdrom else "ide-hd"
        bus, unit = divmod(disk.userdevice, 2)
        device = f"{model},drive={node},id=disk{disk.userdevice},bus=ide.{bus},unit={unit},bootindex={bootindex}"
    else:
        device = f"virtio-blk-pci,drive={node},id=disk{disk.userdevice},bootindex={bootindex}"
    return ["-blockdev", blockdev, "-device", device]


def _nics(uuid: str, nics: list[NicSpec], bridges: frozenset[str]) -> list[str]:
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
        if nic.bridge in bridges:
            opt(nic.bridge, "the bridge name")  # never on the command line, but ip(8) gets it
            argv += ["-netdev", f"tap,id={netdev},ifname={tap_name(uuid, nic.device)},script=no,downscript=no"]
        else:
            argv += ["-netdev", f"user,id={netdev},restrict=on"]
        # romfile= (empty): no PXE option ROM, so the BIOS does not spend time on it.
        argv += ["-device", f"{NIC_MODEL},netdev={netdev},id=nic{nic.device},mac={nic.mac.lower()},romfile="]
    return argv

"""The QEMU argv builder: golden command lines, escaping, and what it refuses."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import pytest

from farside.hypervisor.driver import DiskSpec, NicSpec, VMSpec
from farside.hypervisor.qemu.argv import SANDBOX, Fds, bridged, build_argv, opt, tap_name

GOLDEN = Path(__file__).parent / "golden"
UUID = "6f1c3c9e-2a51-4c1e-9a0b-3d2f1e0c4b5a"
SR = Path("/srv/lun,a/sr")
# The descriptors a driver would have opened: the serial log, each userdevice's image, taps.
FDS = Fds(serial=3, disks={0: 4, 1: 5, 3: 6, 4: 7})


def full_spec() -> VMSpec:
    """A qcow2 disk, a raw disk, a CD, two NICs (one on an existing bridge); commas everywhere."""
    return VMSpec(
        uuid=UUID,
        name="web,01 (primary)",
        memory_bytes=512 * 1024 * 1024,
        vcpus=2,
        disks=[
            DiskSpec("vdi-cd", SR / "install,iso.raw", "raw", read_only=True, userdevice=3, cdrom=True),
            DiskSpec("vdi-data", SR / "data,1.raw", "raw", read_only=False, userdevice=1),
            DiskSpec("vdi-root", SR / "root,disk.qcow2", "qcow2", read_only=False, userdevice=0, bootable=True),
        ],
        nics=[
            NicSpec("02:00:00:AA:BB:01", "xenbr1", 1),
            NicSpec("02:00:00:aa:bb:00", "xenbr0", 0),
        ],
    )


def minimal_spec() -> VMSpec:
    return VMSpec(
        UUID, "tiny", 16 * 1024 * 1024, 1, [DiskSpec("vdi-0", SR / "boot.raw", "raw", False, 0, bootable=True)]
    )


CASES = {
    "full": lambda: build_argv(full_spec(), fds=replace(FDS, taps={0: 8})),
    "minimal": lambda: build_argv(minimal_spec(), fds=FDS),
    "empty_cd_drive": lambda: build_argv(replace(minimal_spec(), cd_drives=[3]), fds=FDS),
    "kvm_incoming_virtio": lambda: build_argv(
        replace(
            minimal_spec(),
            disks=[
                DiskSpec("vdi-0", SR / "boot.raw", "raw", False, 0),
                DiskSpec("vdi-4", SR / "extra.qcow2", "qcow2", True, 4, bootable=True),
            ],
        ),
        fds=FDS,
        qemu="/usr/bin/qemu-system-x86_64",
        kvm=True,
        incoming=True,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, regenerate: bool) -> None:
    """The argv for each reference spec is exactly the golden file's, one argument per line."""
    text = "\n".join(CASES[case]()) + "\n"
    path = GOLDEN / f"{case}.argv"
    if regenerate:
        path.write_text(text)
    assert text == path.read_text(), f"{path.name} differs; review, then rerun with --regenerate"


def _value(argv: list[str], flag: str, prefix: str = "") -> str:
    found = [v for f, v in itertools.pairwise(argv) if f == flag and v.startswith(prefix)]
    assert len(found) == 1, (flag, prefix, found)
    return found[0]


def test_commas_doubled_in_option_strings() -> None:
    """The name inside a QEMU option string has its commas doubled."""
    argv = build_argv(full_spec(), fds=FDS)
    assert _value(argv, "-name") == "guest=web,,01 (primary)"
    assert _value(argv, "-add-fd", "fd=4,") == "fd=4,set=4,opaque=vdi vdi-root"


def test_qemu_opens_no_host_path() -> None:
    """No image, log or socket path of the host is on the command line: QEMU gets descriptors, and
    reaches its QMP socket relative to its working directory, the run directory."""
    argv = build_argv(full_spec(), fds=replace(FDS, taps={0: 8}))
    assert not [a for a in argv if "/srv/" in a or "/var/" in a or "/run/" in a]
    assert "-pidfile" not in argv
    assert _value(argv, "-chardev", "socket,") == "socket,id=mon,path=qmp.sock,reconnect=1"
    assert _value(argv, "-chardev", "file,") == "file,id=ser0,path=/dev/fdset/3,append=on"
    assert _value(argv, "-netdev", "tap,") == "tap,id=vif0,fd=8"
    assert _value(argv, "-sandbox") == SANDBOX
    assert SANDBOX == "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"


def test_qcow2_never_opens_a_backing_file() -> None:
    """A qcow2 blockdev says ``"backing": null`` (JSON: the dotted syntax has no null); raw has none."""
    blockdevs = [json.loads(v) for f, v in itertools.pairwise(build_argv(full_spec(), fds=FDS)) if f == "-blockdev"]
    by_node = {b["node-name"]: b for b in blockdevs}
    assert by_node["vbd0"] == {
        "driver": "qcow2",
        "node-name": "vbd0",
        "read-only": False,
        "file": {"driver": "file", "filename": "/dev/fdset/4"},
        "backing": None,
    }
    assert "backing" not in by_node["vbd1"]
    assert by_node["vbd3"]["read-only"] is True  # the CD


def test_every_disk_needs_its_descriptor() -> None:
    """A disk the driver opened no descriptor for is refused, not opened by name."""
    with pytest.raises(ValueError, match="no file descriptor"):
        build_argv(minimal_spec(), fds=Fds(serial=3, disks={}))


@pytest.mark.parametrize(
    "change",
    [{"name": "two\nlines"}, {"name": "nul\0byte"}, {"name": ""}],
    ids=["newline-in-name", "nul-in-name", "empty-name"],
)
def test_refuses_what_options_cannot_take(change: dict[str, object]) -> None:
    """Control characters (newlines, NULs) and empty values never reach the command line."""
    with pytest.raises(ValueError):
        build_argv(replace(minimal_spec(), **change), fds=FDS)  # type: ignore[arg-type]


def test_refuses_newline_in_bridge() -> None:
    """A bridge name with a newline (it goes to ip(8)) is refused."""
    nic = NicSpec("02:00:00:00:00:01", "br\n0", 0)
    with pytest.raises(ValueError):
        bridged(replace(minimal_spec(), nics=[nic]), frozenset({"br\n0"}))


@pytest.mark.parametrize(
    "change",
    [
        {"uuid": "not-a-uuid"},
        {"uuid": UUID.upper()},
        {"vcpus": 0},
        {"memory_bytes": 1000},
        {"disks": [DiskSpec("v", SR / "a", "vmdk", False, 0)]},
        {"disks": [DiskSpec("v", SR / "a", "raw", False, 0), DiskSpec("w", SR / "b", "raw", False, 0)]},
        {"disks": [DiskSpec("v", SR / "a", "raw", True, 5, cdrom=True)]},
        {"nics": [NicSpec("02:00:00:00:00", "xenbr0", 0)]},
        {"nics": [NicSpec("02:00:00:00:00:01", "a", 0), NicSpec("02:00:00:00:00:02", "b", 0)]},
        {"cd_drives": [0]},
        {"cd_drives": [4]},
    ],
    ids=[
        "bad-uuid",
        "uppercase-uuid",
        "no-vcpu",
        "tiny-memory",
        "format",
        "dup-userdevice",
        "cd-slot",
        "mac",
        "dup-vif",
        "empty-cd-on-a-disk",
        "empty-cd-slot",
    ],
)
def test_refuses_bad_specs(change: dict[str, object]) -> None:
    """Specs QEMU would reject or misread are refused before a process starts."""
    with pytest.raises(ValueError):
        build_argv(replace(minimal_spec(), **change), fds=FDS)  # type: ignore[arg-type]


def test_kvm_flag() -> None:
    """TCG unless kvm=True asks for KVM."""
    assert _value(build_argv(minimal_spec(), fds=FDS), "-accel") == "tcg"
    assert _value(build_argv(minimal_spec(), fds=FDS, kvm=True), "-accel") == "kvm"


def test_bridge_only_when_it_exists() -> None:
    """A NIC gets a tap (the driver's, passed as a descriptor) only when the host has its bridge;
    else an isolated user network."""
    spec = replace(minimal_spec(), nics=[NicSpec("02:00:00:00:00:01", "xenbr0", 0)])
    assert _value(build_argv(spec, fds=FDS), "-netdev") == "user,id=vif0,restrict=on"
    on_bridge = build_argv(spec, fds=replace(FDS, taps={0: 9}))
    assert _value(on_bridge, "-netdev") == "tap,id=vif0,fd=9"
    assert bridged(spec, frozenset({"xenbr0"})) == [(0, "tap6f1c3c9e.0", "xenbr0")]
    assert bridged(spec, frozenset()) == []


def test_tap_names_fit_linux() -> None:
    """Tap names stay within Linux's 15 characters, or the NIC is refused."""
    assert tap_name(UUID, 999) == "tap6f1c3c9e.999"
    with pytest.raises(ValueError):
        tap_name(UUID, 1000)


def test_second_slot_has_its_own_socket_and_taps() -> None:
    """A migration's destination (slot 1) runs beside its source: its QMP socket and taps differ,
    everything else is the same command line."""
    spec = replace(minimal_spec(), nics=[NicSpec("02:00:00:00:00:01", "xenbr0", 0)])
    first, second = (build_argv(spec, fds=FDS, incoming=True, slot=slot) for slot in (0, 1))
    assert _value(second, "-chardev", "socket") == "socket,id=mon,path=qmp.1.sock,reconnect=1"
    assert [a for a in first if "qmp" not in a] == [a for a in second if "qmp" not in a]
    assert bridged(spec, frozenset({"xenbr0"}), slot=1) == [(0, "tbp6f1c3c9e.0", "xenbr0")]


def test_bootable_disk_boots_first() -> None:
    """The bootable disk gets boot index 0 whatever its userdevice."""
    disks = [DiskSpec("a", SR / "a", "raw", False, 0), DiskSpec("b", SR / "b", "raw", False, 1, bootable=True)]
    argv = build_argv(replace(minimal_spec(), disks=disks), fds=FDS)
    assert "drive=vbd1,id=disk1,bus=ide.0,unit=1,bootindex=0" in _value(argv, "-device", "ide-hd,drive=vbd1")
    assert "bootindex=1" in _value(argv, "-device", "ide-hd,drive=vbd0")


def test_memory_rounds_up_to_mib() -> None:
    """-m is in MiB, rounded up."""
    assert _value(build_argv(replace(minimal_spec(), memory_bytes=16 * 2**20 + 1), fds=FDS), "-m") == "17"


def test_opt_escapes_and_refuses() -> None:
    """opt() doubles commas and refuses control characters."""
    assert opt("a,b,,c") == "a,,b,,,,c"
    with pytest.raises(ValueError):
        opt("a\rb")

"""The QEMU driver's façade without a real QEMU: checks made before any process starts."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from farside.hypervisor.driver import DiskSpec, DomainState, VMSpec
from farside.hypervisor.errors import DomainError, DomainNotFound, RunRootBusy, VdiMissing
from farside.hypervisor.qemu import QemuDriver, process

UUID = "6f1c3c9e-2a51-4c1e-9a0b-3d2f1e0c4b5a"


@pytest.fixture
def root() -> Iterator[Path]:
    # Short, so the socket paths below it fit; pytest's tmp_path can be too long.
    with tempfile.TemporaryDirectory(prefix="fs,u-", dir="/tmp") as name:
        yield Path(name)


@pytest.fixture
def driver(root: Path) -> Iterator[QemuDriver]:
    with QemuDriver(root / "run") as driver:
        yield driver


def spec(root: Path, disk: Path | None = None) -> VMSpec:
    disk = disk or root / "disk.raw"
    return VMSpec(UUID, "vm", 16 << 20, 1, [DiskSpec("vdi-1", disk, "raw", False, 0, bootable=True)])


@pytest.mark.parametrize(
    ("asked", "usable", "expected"), [(False, True, False), (True, False, False), (True, True, True)]
)
def test_kvm_only_when_asked_and_usable(
    root: Path, monkeypatch: pytest.MonkeyPatch, asked: bool, usable: bool, expected: bool
) -> None:
    """KVM is used only when a setting asks for it and the host really has it."""
    monkeypatch.setattr(process, "kvm_usable", lambda: usable)
    with QemuDriver(root, kvm=asked) as driver:
        assert driver.capabilities["kvm"] is expected


def test_this_host_runs_tcg(root: Path) -> None:
    """Here /dev/kvm is nested software KVM without vmx/svm: asking for KVM still gives TCG."""
    if process.kvm_usable():
        pytest.skip("this host has hardware virtualization")
    with QemuDriver(root, kvm=True) as driver:
        assert driver.capabilities["kvm"] is False


def test_one_driver_per_run_root(root: Path) -> None:
    """A second driver on the same run root is refused until the first closes."""
    first = QemuDriver(root)
    with pytest.raises(RunRootBusy) as busy:
        QemuDriver(root)
    assert busy.value.holder == os.getpid()  # who holds it, for the message
    first.close()
    first.close()  # idempotent
    QemuDriver(root).close()


def test_run_root_too_long(root: Path) -> None:
    """A run root whose socket paths would pass 107 bytes is refused."""
    with pytest.raises(ValueError, match="too long"):
        QemuDriver(root / ("x" * 80))


def test_missing_disk_before_any_process(root: Path) -> None:
    """A missing disk is VDI_MISSING, found before QEMU would run (here it could not)."""
    with QemuDriver(root / "run", qemu_binary="/nonexistent/qemu") as driver:
        with pytest.raises(VdiMissing) as caught:
            driver.start(spec(root, root / "gone.raw"))
        assert caught.value.params == ["vdi-1", str(root / "gone.raw")]
        assert driver.running() == {}


def test_unrunnable_qemu(root: Path) -> None:
    """A QEMU binary that cannot run is a DomainError, and nothing is left in the run directory."""
    (root / "disk.raw").write_bytes(bytes(512))
    with QemuDriver(root / "run", qemu_binary="/nonexistent/qemu") as driver:
        with pytest.raises(DomainError, match="cannot run"):
            driver.start(spec(root))
        assert not (root / "run" / UUID / "qmp.sock").exists()
        assert driver.running() == {}


def test_qemu_that_fails_at_start(root: Path) -> None:
    """QEMU's own error message and exit status reach the DomainError."""
    (root / "disk.raw").write_bytes(bytes(512))
    fake = root / "fake-qemu"
    fake.write_text("#!/bin/sh\necho 'qemu-system-x86_64: -blockdev: Could not open it' >&2\nexit 1\n")
    fake.chmod(0o755)
    root.chmod(0o711)  # QEMU runs as the QEMU user, who must reach the binary
    with QemuDriver(root / "run", qemu_binary=str(fake)) as driver:
        with pytest.raises(DomainError, match="status 1: qemu-system-x86_64: -blockdev: Could not open it"):
            driver.start(spec(root))
        assert driver.running() == {}


def test_missing_qemu_user_says_run_make_setup(root: Path) -> None:
    """Without its system user no QEMU is started, and the error says how to make that user."""
    (root / "disk.raw").write_bytes(bytes(512))
    with QemuDriver(root / "run", qemu_user="farside-no-such-user") as driver:
        with pytest.raises(DomainError, match=r"farside-no-such-user.*run `make setup`"):
            driver.start(spec(root))
        assert driver.running() == {}
        assert not (root / "run" / UUID).exists()


def test_unknown_vm_is_halted(driver: QemuDriver) -> None:
    """A VM without a domain is halted; stopping it does nothing; commands to it fail."""
    assert driver.state(UUID) is DomainState.HALTED
    assert driver.running() == {}
    assert driver.wait_halted(UUID, 0)
    driver.hard_stop(UUID)
    for command in (driver.pause, driver.unpause, driver.press_power_button, driver.reset, driver.reattach):
        with pytest.raises(DomainNotFound):
            command(UUID)


@pytest.mark.parametrize("bad", ["../../etc", "", "x", UUID.upper()])
def test_only_canonical_uuids(driver: QemuDriver, bad: str) -> None:
    """A uuid names a directory below the run root, so nothing else is accepted."""
    with pytest.raises(DomainError, match="not a VM uuid"):
        driver.state(bad)
    with pytest.raises(DomainError):
        driver.serial_log(bad)


def test_serial_log_path(driver: QemuDriver) -> None:
    """The serial log lives in the VM's run directory."""
    assert driver.serial_log(UUID) == driver.run_root / UUID / "serial.log"
    assert driver.read_serial(UUID) == b""

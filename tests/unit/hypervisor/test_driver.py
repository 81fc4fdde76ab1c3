"""The driver contract: its generic defaults, its records and its errors, with a tiny fake driver."""

from __future__ import annotations

from pathlib import Path

import pytest

from farside.hypervisor.driver import DiskSpec, DomainState, Driver, NicSpec, VMSpec
from farside.hypervisor.errors import DomainError, DomainNotFound, VdiMissing

UUID = "6f1c3c9e-2a51-4c1e-9a0b-3d2f1e0c4b5a"


class FakeDriver(Driver):
    """One guest that ignores the first ``deaf`` presses of its power button."""

    def __init__(self, deaf: int = 0, log: Path | None = None) -> None:
        super().__init__()
        self.deaf = deaf
        self.presses = 0
        self.hard_stops = 0
        self.status = DomainState.RUNNING
        self.log = log

    def state(self, uuid: str) -> DomainState:
        return self.status

    def press_power_button(self, uuid: str) -> None:
        if self.status is DomainState.HALTED:
            raise DomainNotFound(uuid)
        self.presses += 1
        if self.presses > self.deaf:
            self.status = DomainState.HALTED

    def hard_stop(self, uuid: str) -> None:
        self.hard_stops += 1
        self.status = DomainState.HALTED

    def serial_log(self, uuid: str) -> Path:
        assert self.log is not None
        return self.log


def test_clean_shutdown_presses_again() -> None:
    """A press the guest missed is repeated until it powers off."""
    driver = FakeDriver(deaf=2)
    assert driver.clean_shutdown(UUID, timeout=5, press_interval=0.01)
    assert driver.presses == 3
    assert driver.hard_stops == 0


def test_clean_shutdown_gives_up() -> None:
    """A guest that never listens is left running, and clean_shutdown says so."""
    driver = FakeDriver(deaf=10**9)
    assert not driver.clean_shutdown(UUID, timeout=0.1, press_interval=0.02)
    assert driver.status is DomainState.RUNNING


def test_clean_shutdown_of_a_halted_domain() -> None:
    """Nothing to press: the domain is down already."""
    driver = FakeDriver()
    driver.status = DomainState.HALTED
    assert driver.clean_shutdown(UUID, timeout=1)


def test_shutdown_falls_back_to_hard_stop() -> None:
    """shutdown stops a deaf guest hard after the timeout and reports that it was not clean."""
    deaf = FakeDriver(deaf=10**9)
    assert deaf.shutdown(UUID, timeout=0.1) is False
    assert deaf.hard_stops == 1
    assert deaf.status is DomainState.HALTED
    polite = FakeDriver()
    assert polite.shutdown(UUID, timeout=1) is True
    assert polite.hard_stops == 0


def test_wait_halted_times_out() -> None:
    """wait_halted is False when the domain still runs at the deadline."""
    assert FakeDriver().wait_halted(UUID, 0.05) is False


def test_read_serial_default(tmp_path: Path) -> None:
    """read_serial returns the log's tail, and nothing when there is no log yet."""
    driver = FakeDriver(log=tmp_path / "serial.log")
    assert driver.read_serial(UUID) == b""
    driver.log = tmp_path / "serial.log"
    driver.log.write_bytes(b"BOOT x\r\nTICK 1\r\n")
    assert driver.read_serial(UUID, 8) == b"TICK 1\r\n"


REQUIRED = [
    ("start", (VMSpec(UUID, "vm", 1 << 24, 1),)),
    ("state", (UUID,)),
    ("pause", (UUID,)),
    ("unpause", (UUID,)),
    ("press_power_button", (UUID,)),
    ("hard_stop", (UUID,)),
    ("reset", (UUID,)),
    ("suspend", (UUID, Path("/tmp/x"))),
    ("migrate", (UUID,)),
    ("running", ()),
    ("reattach", (UUID,)),
    ("serial_log", (UUID,)),
    ("close", ()),
]


@pytest.mark.parametrize(("method", "args"), REQUIRED, ids=[m for m, _ in REQUIRED])
def test_required_methods_raise(method: str, args: tuple[object, ...]) -> None:
    """Every required method of the base class raises NotImplementedError and is documented."""
    assert getattr(Driver, method).__doc__
    with pytest.raises(NotImplementedError):
        getattr(Driver(), method)(*args)


def test_capabilities_keys() -> None:
    """The base class names every capability a driver must declare."""
    assert set(Driver.capabilities) == {
        "kvm",
        "suspend",
        "live_migration",
        "acpi_power_button",
        "reattach",
        "live_snapshot",
    }


def test_spec_json_round_trip() -> None:
    """A spec survives to_json / from_json (spec.json in the run directory)."""
    spec = VMSpec(
        UUID,
        "web,01",
        512 << 20,
        2,
        [
            DiskSpec("v", Path("/srv/a,b.qcow2"), "qcow2", False, 0, bootable=True),
            DiskSpec("c", Path("/c"), "raw", True, 3, True),
        ],
        [NicSpec("02:00:00:00:00:01", "xenbr0", 0)],
    )
    assert VMSpec.from_json(spec.to_json()) == spec


def test_errors_carry_xapi_failures() -> None:
    """VDI_MISSING names the VDI and its path; domain errors are INTERNAL_ERROR with the VM uuid."""
    assert VdiMissing("vdi-1", Path("/srv/x.raw")).failure == ["VDI_MISSING", "vdi-1", "/srv/x.raw"]
    assert DomainError(UUID, "boom").failure == ["INTERNAL_ERROR", f"{UUID}: boom"]
    assert DomainNotFound(UUID).failure == ["INTERNAL_ERROR", f"{UUID}: no running domain"]

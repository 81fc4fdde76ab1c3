"""The bootable test image under real QEMU: it boots, prints its tag, ticks, counts on its disk,
pauses and resumes without losing count, and powers off on the ACPI power button.

Each QEMU runs with ``-accel tcg -machine pc`` (see FACTS.md: the nested KVM here is slower) and
talks QMP as a client of a socket the test listens on, so there is no race with QEMU creating the
socket. Every QEMU is killed in the fixture's teardown.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from farside.storage.bootable import read_counter

QEMU = "qemu-system-x86_64"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"{QEMU} is not installed"),
]

TICK = re.compile(rb"TICK (\d+)\r\n")


def farside(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "farside.cli.main", *args], capture_output=True, text=True, timeout=60)


def make_image(path: Path, tag: str, *extra: str) -> Path:
    """An image made the operator's way, with ``farside image bootable``."""
    result = farside("image", "bootable", str(path), "--tag", tag, *extra)
    assert result.returncode == 0, result.stderr
    return path


def qemu_opt(path: Path) -> str:
    """A path inside a QEMU option string, where a comma must be doubled."""
    return str(path).replace(",", ",,")


class Guest:
    """One QEMU running an image, with its serial log and a raw QMP connection."""

    def __init__(self, image: Path, workdir: Path) -> None:
        self.image = image
        self.log_path = workdir / "serial.log"
        # A unix socket path must stay under 108 bytes; pytest's tmp_path can be longer.
        self._sockdir = Path(tempfile.mkdtemp(prefix="farside-qmp-"))
        self.events: list[dict[str, Any]] = []
        self.started = time.monotonic()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self._sockdir / "qmp.sock"))
            listener.listen(1)
            listener.settimeout(10)
            self.started = time.monotonic()
            self.process = subprocess.Popen(
                [
                    QEMU,
                    "-accel", "tcg",
                    "-machine", "pc",
                    "-m", "16",
                    "-nodefaults",
                    "-display", "none",
                    "-chardev", f"file,id=ser,path={qemu_opt(self.log_path)}",
                    "-serial", "chardev:ser",
                    "-drive", f"file={qemu_opt(image)},format=raw,if=ide",
                    "-qmp", f"unix:{qemu_opt(self._sockdir / 'qmp.sock')}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            try:
                self._conn, _ = listener.accept()
                self._conn.settimeout(10)
                self._stream = self._conn.makefile("rb")
                assert "QMP" in json.loads(self._stream.readline())
                self.command("qmp_capabilities")
            except BaseException:
                # Not yet in the fixture's list: no QEMU may outlive a failed start.
                self.kill()
                raise
        finally:
            listener.close()

    def command(self, name: str, **arguments: Any) -> Any:
        """Run a QMP command and return its result; events seen meanwhile go to ``events``."""
        message: dict[str, Any] = {"execute": name}
        if arguments:
            message["arguments"] = arguments
        self._conn.sendall(json.dumps(message).encode() + b"\n")
        while True:
            line = self._stream.readline()
            if not line:
                raise ConnectionError(f"QMP closed during {name}")
            reply = json.loads(line)
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                raise RuntimeError(f"QMP {name}: {reply['error']}")
            else:
                return reply["return"]

    def drain_events(self) -> None:
        """Read the events left on the socket until QEMU closes it (after it has exited)."""
        for line in self._stream:
            reply = json.loads(line)
            if "event" in reply:
                self.events.append(reply)

    def serial(self) -> bytes:
        return self.log_path.read_bytes() if self.log_path.exists() else b""

    def ticks(self) -> list[int]:
        return [int(n) for n in TICK.findall(self.serial())]

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll ``condition`` every 5 ms; return the seconds it took, or fail after ``timeout``."""
        start = time.monotonic()
        while not condition():
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode() if self.process.stderr else ""
                raise AssertionError(f"QEMU exited ({self.process.returncode}) waiting for {what}: {stderr}")
            if time.monotonic() - start > timeout:
                raise AssertionError(f"no {what} within {timeout} s; serial log: {self.serial()[-300:]!r}")
            time.sleep(0.005)
        return time.monotonic() - start

    def press_power_button(self, timeout: float = 3.0) -> float:
        """Press the ACPI button every 0.5 s until QEMU exits; return seconds from the first press.

        A press before the guest has enabled PWRBTN_EN is dropped, hence the retries.
        """
        first = time.monotonic()
        while True:
            self.command("system_powerdown")
            try:
                self.process.wait(timeout=0.5)
                return time.monotonic() - first
            except subprocess.TimeoutExpired:
                if time.monotonic() - first > timeout:
                    raise AssertionError(f"QEMU still runs {timeout} s after the first press") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()
        if hasattr(self, "_stream"):
            self._stream.close()
        if hasattr(self, "_conn"):
            self._conn.close()
        shutil.rmtree(self._sockdir, ignore_errors=True)


@pytest.fixture
def boot(tmp_path: Path) -> Iterator[Callable[[Path], Guest]]:
    """Start a Guest on an image; every guest started is killed at teardown, whatever happened."""
    guests: list[Guest] = []

    def start(image: Path) -> Guest:
        workdir = tmp_path / f"guest{len(guests)}"
        workdir.mkdir()
        guest = Guest(image, workdir)
        guests.append(guest)
        return guest

    try:
        yield start
    finally:
        for guest in guests:
            guest.kill()


def booted(guest: Guest, tag: str) -> float:
    """Wait for ``BOOT <tag>``; return the seconds since QEMU was started."""
    guest.wait_for(lambda: f"BOOT {tag}\r\n".encode() in guest.serial(), 5.0, f"BOOT {tag}")
    return time.monotonic() - guest.started


def test_boots_prints_tag_and_ticks(tmp_path: Path, boot: Callable[[Path], Guest]) -> None:
    """The guest prints BOOT <tag> within seconds, then TICK 1, 2, 3 ... about every 110 ms."""
    tag = "vm-42 <Site A> #1"
    guest = boot(make_image(tmp_path / "a.raw", tag))
    assert booted(guest, tag) < 5.0
    guest.wait_for(lambda: len(guest.ticks()) >= 1, 2.0, "TICK 1")
    first = time.monotonic()
    seen = len(guest.ticks())
    guest.wait_for(lambda: len(guest.ticks()) >= seen + 10, 5.0, "10 more ticks")
    interval = (time.monotonic() - first) / (len(guest.ticks()) - seen)
    assert 0.07 < interval < 0.25, interval
    ticks = guest.ticks()
    assert ticks == list(range(1, len(ticks) + 1))
    assert guest.serial().startswith(f"BOOT {tag}\r\nTICK 1\r\n".encode())


def test_counter_on_disk(tmp_path: Path, boot: Callable[[Path], Guest]) -> None:
    """With --counter the count in sector 3 grows while the guest runs, and matches the log when stopped."""
    image = make_image(tmp_path / "c.raw", "counting", "--counter")
    assert read_counter(image) == 0
    guest = boot(image)
    booted(guest, "counting")
    guest.wait_for(lambda: (read_counter(image) or 0) >= 2, 3.0, "a count of 2 on disk")
    earlier = read_counter(image)
    assert earlier is not None
    guest.wait_for(lambda: (read_counter(image) or 0) >= earlier + 3, 3.0, "the count to grow on disk")
    guest.command("stop")
    on_disk = read_counter(image)
    printed = guest.ticks()[-1]
    # The guest prints before it writes, so a stop in between leaves the disk one behind.
    assert on_disk in (printed - 1, printed)
    time.sleep(0.3)
    assert read_counter(image) == on_disk


def test_no_counter_leaves_the_disk_alone(tmp_path: Path, boot: Callable[[Path], Guest]) -> None:
    """Without --counter the guest never writes sector 3."""
    image = make_image(tmp_path / "n.raw", "quiet")
    guest = boot(image)
    booted(guest, "quiet")
    guest.wait_for(lambda: len(guest.ticks()) >= 3, 3.0, "3 ticks")
    assert read_counter(image) is None


def test_power_button_powers_off(tmp_path: Path, boot: Callable[[Path], Guest]) -> None:
    """system_powerdown makes the guest say POWEROFF, and QEMU exits 0 with a guest SHUTDOWN."""
    guest = boot(make_image(tmp_path / "p.raw", "bye"))
    booted(guest, "bye")
    latency = guest.press_power_button(timeout=3.0)
    assert latency < 3.0
    assert guest.process.returncode == 0
    assert guest.serial().endswith(b"POWEROFF\r\n")
    guest.drain_events()
    shutdowns = [e for e in guest.events if e["event"] == "SHUTDOWN"]
    assert shutdowns and shutdowns[0]["data"] == {"guest": True, "reason": "guest-shutdown"}


def test_power_button_right_after_start(tmp_path: Path, boot: Callable[[Path], Guest]) -> None:
    """Pressing from the moment QEMU starts works too: early presses are dropped, a retry lands."""
    guest = boot(make_image(tmp_path / "e.raw", "early"))
    guest.press_power_button(timeout=3.0)
    assert guest.process.returncode == 0
    assert b"POWEROFF\r\n" in guest.serial()


def test_stop_and_cont_keep_counting(tmp_path: Path, boot: Callable[[Path], Guest]) -> None:
    """A paused guest stops ticking; after cont it continues from where it was, without a reboot."""
    guest = boot(make_image(tmp_path / "s.raw", "pause"))
    booted(guest, "pause")
    guest.wait_for(lambda: len(guest.ticks()) >= 3, 3.0, "3 ticks")
    guest.command("stop")
    assert guest.command("query-status")["status"] == "paused"
    paused_at = guest.ticks()
    time.sleep(0.5)
    assert guest.ticks() == paused_at
    guest.command("cont")
    guest.wait_for(lambda: len(guest.ticks()) >= len(paused_at) + 3, 3.0, "3 ticks after cont")
    ticks = guest.ticks()
    assert ticks == list(range(1, len(ticks) + 1))
    assert guest.serial().count(b"BOOT ") == 1


def test_press_while_paused_is_kept(tmp_path: Path, boot: Callable[[Path], Guest]) -> None:
    """A press while the guest is paused takes effect when it runs again."""
    guest = boot(make_image(tmp_path / "k.raw", "later"))
    booted(guest, "later")
    guest.wait_for(lambda: len(guest.ticks()) >= 1, 2.0, "TICK 1")
    guest.command("stop")
    guest.command("system_powerdown")
    time.sleep(0.3)
    assert guest.process.poll() is None
    guest.command("cont")
    guest.process.wait(timeout=3)
    assert guest.process.returncode == 0
    assert guest.serial().endswith(b"POWEROFF\r\n")


class TestCli:
    def test_writes_the_image(self, tmp_path: Path) -> None:
        """The command says what it wrote."""
        result = farside("image", "bootable", str(tmp_path / "x.raw"), "--tag", "x", "--size-mib", "2", "--counter")
        assert result.returncode == 0, result.stderr
        assert "x.raw" in result.stdout and "2 MiB" in result.stdout
        assert (tmp_path / "x.raw").stat().st_size == 2 * 1024 * 1024

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--tag", "caf\u00e9"], "printable ASCII"),
            (["--tag", "x" * 201], "1 to 200 characters"),
            (["--tag", ""], "1 to 200 characters"),
            (["--tag", "x", "--size-mib", "0"], "at least 1 MiB"),
        ],
        ids=["not-ascii", "too-long", "empty", "too-small"],
    )
    def test_bad_input(self, tmp_path: Path, args: list[str], message: str) -> None:
        """Bad input is one line on stderr and exit code 2, and no file is left behind."""
        result = farside("image", "bootable", str(tmp_path / "x.raw"), *args)
        assert result.returncode == 2
        assert message in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert not (tmp_path / "x.raw").exists()

    def test_unwritable_path(self, tmp_path: Path) -> None:
        """A path that cannot be written is one line and exit code 2."""
        result = farside("image", "bootable", str(tmp_path / "missing" / "x.raw"), "--tag", "x")
        assert result.returncode == 2
        assert result.stderr.startswith("farside: cannot write") and result.stderr.count("\n") == 1

    def test_existing_file(self, tmp_path: Path) -> None:
        """An existing file is never overwritten: exit code 2 and the file unchanged."""
        (tmp_path / "x.raw").write_bytes(b"keep")
        result = farside("image", "bootable", str(tmp_path / "x.raw"), "--tag", "x")
        assert result.returncode == 2 and "exists already" in result.stderr
        assert (tmp_path / "x.raw").read_bytes() == b"keep"

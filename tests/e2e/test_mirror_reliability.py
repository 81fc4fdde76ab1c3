"""The mirror under abuse: SIGKILLed daemons, a VM writing its disk during cycles, SIGTERM.

- The daemon (``farside mirror run``) is SIGKILLed at random moments, 20 times (100 with
  ``FARSIDE_SOAK=1``), while it copies one generation of the source over the previous one. After
  each kill, the target, once the next command has replayed any pending journal, is exactly one
  generation the source had, never older than the one before; the next run carries on.
- A VM running ``farside image bootable --counter`` (on a qcow2 disk) writes its tick count while
  cycles run: the target image always passes ``qemu-img check`` and its count never goes back.
- SIGTERM stops the daemon cleanly (exit 0), between files.
- ``farside mirror split`` issued while the daemon runs a long (bandwidth-limited) cycle takes the
  mirror at once: the cycle is abandoned, the target is the last complete cycle, the daemon goes on.

ENOSPC, torn applies and unstable files are covered in tests/unit/mirror/ (writer hooks).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from farside.mirror import journal
from farside.mirror.pair import Mirrors
from farside.storage.bootable import read_counter
from mirror_trees import MIB, fill, tree

pytestmark = pytest.mark.e2e

SOAK = os.environ.get("FARSIDE_SOAK") == "1"
KILLS = 100 if SOAK else 20
QEMU = "qemu-system-x86_64"
FILES = {"a.img": 8 * MIB, "b.img": 6 * MIB + 333, "sparse.img": 48 * MIB}


def farside(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "farside.cli.main", *args], capture_output=True, text=True, timeout=timeout
    )


def digest_tree(root: Path) -> str:
    h = hashlib.sha256()
    for rel, data in sorted(tree(root).items()):
        h.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def write_generation(source: Path, gen: int, rng: random.Random) -> None:
    """Change random chunks of every file, and sometimes its size, as generation ``gen``."""
    for name, size in FILES.items():
        path = source / name
        if not path.exists():
            fill(path, size, seed=gen, data_at=(0, 30) if name == "sparse.img" else ())
            continue
        with open(path, "r+b") as f:
            for chunk in rng.sample(range(size // MIB), 3):
                f.seek(chunk * MIB + rng.randrange(MIB - 64))
                f.write(f"generation {gen}".encode() * 3)
            if name == "b.img":
                f.truncate(size + rng.randrange(-MIB, MIB))


class Daemon:
    """``farside mirror run`` as a child process."""

    def __init__(self, state: Path, name: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "farside.cli.main", "mirror", "run", "--state-dir", str(state), name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(60)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.kill()


def wait_cycle(mirrors: Mirrors, name: str, number: int, daemon: Daemon, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while mirrors.load(name).last_cycle.number < number:
        if daemon.process.poll() is not None:
            raise AssertionError(f"the daemon exited ({daemon.process.returncode}): {daemon.process.stderr}")
        assert time.monotonic() < deadline, f"cycle {number} did not complete within {timeout} s"
        time.sleep(0.02)


def test_sigkill_at_random_moments(tmp_path: Path, daemons: list[Daemon]) -> None:
    """After every SIGKILL the target is one whole generation, never older than before; runs carry on."""
    source, target, state = tmp_path / "a" / "lun", tmp_path / "b" / "lun", tmp_path / "state"
    source.mkdir(parents=True)
    (tmp_path / "b").mkdir()
    rng = random.Random(6)
    write_generation(source, 0, rng)
    generations = {digest_tree(source): 0}
    mirrors = Mirrors(state)
    mirrors.create("m", source, target, interval=0)
    # How long a run takes to start and copy a generation: the window the kills are spread over.
    start = time.monotonic()
    daemons.append(Daemon(state, "m"))
    wait_cycle(mirrors, "m", 1, daemons[-1])
    window = time.monotonic() - start
    daemons[-1].kill()
    last_seen = 0
    mid_apply = 0
    for gen in range(1, KILLS + 1):
        write_generation(source, gen, rng)
        generations[digest_tree(source)] = gen
        daemons.append(Daemon(state, "m"))
        time.sleep(rng.uniform(0, window * 1.2))
        daemons[-1].process.send_signal(signal.SIGKILL)
        daemons[-1].kill()
        mid_apply += journal.pending_exists(target)
        with mirrors.locked("m"):  # what every command does first: finish an interrupted apply
            seen = generations.get(digest_tree(target))
        assert seen is not None, f"kill {gen}: the target is not any generation the source had"
        assert last_seen <= seen <= gen, f"kill {gen}: the target went from generation {last_seen} to {seen}"
        last_seen = seen
    result = farside("mirror", "sync", "--state-dir", str(state), "m")
    assert result.returncode == 0, result.stderr
    assert tree(target) == tree(source)
    print(f"{KILLS} kills, {mid_apply} of them during an apply; target generations ended at {last_seen}")


def test_sigterm_stops_cleanly(tmp_path: Path, daemons: list[Daemon]) -> None:
    """SIGTERM ends the daemon with exit status 0, leaving no journal behind."""
    source, target, state = tmp_path / "a", tmp_path / "b", tmp_path / "state"
    source.mkdir()
    write_generation(source, 0, random.Random(1))
    mirrors = Mirrors(state)
    mirrors.create("m", source, target, interval=0)
    daemons.append(Daemon(state, "m"))
    wait_cycle(mirrors, "m", 1, daemons[-1])
    status = farside("mirror", "status", "--state-dir", str(state), "m")
    assert f"daemon pid {daemons[-1].process.pid}" in status.stdout
    fill(tmp_path / "late.img", 16 * MIB, seed=2)
    (tmp_path / "late.img").rename(source / "late.img")  # whole, as a copy tool would place it
    daemons[-1].process.send_signal(signal.SIGTERM)
    out, err = daemons[-1].process.communicate(timeout=120)
    assert daemons[-1].process.returncode == 0, err
    assert "stopped" in out
    assert not journal.journal_dir(target).exists()
    assert digest_tree(target) in {digest_tree(source), _without(source, "late.img")}


def test_split_preempts_the_daemons_cycle(tmp_path: Path, daemons: list[Daemon]) -> None:
    """A split during a long cycle abandons it: the failover gets the last complete cycle now, not
    once the cycle has crawled to its end at 1 MiB/s (a minute here)."""
    source, target, state = tmp_path / "a", tmp_path / "b", tmp_path / "state"
    source.mkdir()
    write_generation(source, 0, random.Random(3))
    mirrors = Mirrors(state)
    mirrors.create("m", source, target, interval=0)
    mirrors.sync("m")
    before = digest_tree(target)
    record = mirrors.load("m")
    record.bwlimit = 1.0
    mirrors.state_dir.save(record)
    fill(source / "big.img", 64 * MIB, seed=4)
    daemons.append(Daemon(state, "m"))
    deadline = time.monotonic() + 60
    while not (journal.journal_dir(target) / "new").is_dir():  # the daemon's cycle is under way
        assert time.monotonic() < deadline and daemons[-1].process.poll() is None
        time.sleep(0.02)
    split = farside("mirror", "split", "--state-dir", str(state), "m", timeout=30)
    assert split.returncode == 0, split.stderr
    assert digest_tree(target) == before
    status = mirrors.status("m")
    assert (status["state"], status["cycle"], status["failing"]) == ("split", 1, False)
    daemons[-1].process.send_signal(signal.SIGTERM)
    out, err = daemons[-1].process.communicate(timeout=60)
    assert daemons[-1].process.returncode == 0, err
    assert "MIRROR_CYCLE_ABANDONED" in out + err


def _without(root: Path, name: str) -> str:
    h = hashlib.sha256()
    for rel, data in sorted(tree(root).items()):
        if rel != name:
            h.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


@pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"{QEMU} is not installed")
def test_counter_vm_writing_during_cycles(tmp_path: Path) -> None:
    """A VM writes its disk during cycles: the target passes qemu-img check and its count never goes back."""
    source, target = tmp_path / "a", tmp_path / "b"
    source.mkdir()
    raw = tmp_path / "counter.raw"
    made = farside("image", "bootable", str(raw), "--tag", "mirror", "--counter", "--size-mib", "4")
    assert made.returncode == 0, made.stderr
    disk = source / "counter.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(disk)], check=True)
    mirrors = Mirrors(tmp_path / "state")
    mirrors.create("vm", source, target, interval=0)
    qemu = subprocess.Popen(
        [QEMU, "-accel", "tcg", "-machine", "pc", "-m", "16", "-nodefaults", "-display", "none",
         "-drive", f"file={str(disk).replace(',', ',,')},format=qcow2,if=ide"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    scratch = Path(tempfile.mkdtemp(prefix="farside-counter-"))
    try:
        counts: list[int] = []
        deadline = time.monotonic() + 240
        while len(set(counts)) < 12:
            assert qemu.poll() is None, qemu.stderr.read() if qemu.stderr else ""
            assert time.monotonic() < deadline, f"the count did not advance enough within 240 s: {counts}"
            mirrors.sync("vm")
            copy = target / "counter.qcow2"
            check = subprocess.run(["qemu-img", "check", str(copy)], capture_output=True, text=True)
            assert check.returncode == 0, check.stdout + check.stderr
            out = scratch / "counter.raw"
            out.unlink(missing_ok=True)
            subprocess.run(["qemu-img", "convert", "-O", "raw", str(copy), str(out)], check=True)
            count = read_counter(out)
            assert count is not None
            assert not counts or count >= counts[-1], f"the count went back: {counts[-1]} then {count}"
            counts.append(count)
            time.sleep(0.15)
        assert counts[-1] > counts[0]
    finally:
        qemu.kill()
        qemu.wait(30)
        shutil.rmtree(scratch, ignore_errors=True)

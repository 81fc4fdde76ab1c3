#!/usr/bin/env python3
"""Benchmark of ``farside mirror`` against ``cp`` and ``rsync``, all on the same data in one run.

The issue's benchmark:

1. Initial sync of 2 GiB across 20 images of 100 MiB each: 10 fully written with random data,
   10 sparse (10 MiB of random data each, at random 1 MiB chunks, the rest holes). Timed, each
   into its own empty target: ``cp -r --sparse=always``, ``rsync -a --sparse``, and a mirror's
   first cycle (``Mirrors.sync``, in process). The mirror fsyncs its journal and every file it
   writes; ``cp`` and ``rsync`` do not, so each baseline is also reported with a ``sync`` of the
   filesystem after it (what a durable copy costs them); the ratio target is against plain cp.
2. A resync after changing 1% of the chunks (20 of 2,000, at random, each rewritten with random
   data, holes included): the mirror is split, the source changed, then ``Mirrors.resync``;
   against ``rsync -a --inplace --no-whole-file`` from the same source into rsync's copy.
3. For each: bytes read at the source, bytes sent, and bytes written at the target (the mirror's
   journal included). rsync's "sent" is its literal data (``--stats``).

Targets: initial sync at least 0.9x cp's throughput; the resync sends at most 1.1x the changed
bytes, writes at most 2.2x, and finishes faster than rsync. Page caches stay warm throughout (the
source was just written), for every tool alike. Each target is compared with the source after
its run (not timed).

Usage: ``.venv/bin/python bench/mirror.py [--quick]`` (``--quick``: 200 MiB instead of 2 GiB).
Needs ``rsync`` (``make bench`` installs it). Everything lives in a temporary directory that is
removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from farside.mirror.pair import Mirrors

MIB = 1 << 20
IMAGES = 20


def make_source(root: Path, image_mib: int, rng: random.Random) -> None:
    root.mkdir()
    sparse_data = max(1, image_mib // 10)
    for i in range(IMAGES):
        path = root / f"vdi-{i:02d}.img"
        with open(path, "wb") as f:
            if i % 2 == 0:
                for _ in range(image_mib):
                    f.write(rng.randbytes(MIB))
            else:
                f.truncate(image_mib * MIB)
                for chunk in rng.sample(range(image_mib), sparse_data):
                    f.seek(chunk * MIB)
                    f.write(rng.randbytes(MIB))
    subprocess.run(["sync"], check=True)


def change_chunks(root: Path, image_mib: int, rng: random.Random) -> int:
    """Rewrite 1% of all chunks with random data; the bytes changed."""
    total = IMAGES * image_mib
    picks = rng.sample(range(total), max(1, total // 100))
    for pick in picks:
        with open(root / f"vdi-{pick // image_mib:02d}.img", "r+b") as f:
            f.seek((pick % image_mib) * MIB)
            f.write(rng.randbytes(MIB))
    return len(picks) * MIB


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.glob("*.img")):
        h.update(path.name.encode())
        with open(path, "rb") as f:
            while block := f.read(8 * MIB):
                h.update(block)
    return h.hexdigest()


def allocated(root: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in root.glob("*.img"))


def timed(argv: list[str]) -> tuple[float, float, str]:
    """Run a command; seconds without and with a ``sync`` after it, and its output."""
    start = time.perf_counter()
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    plain = time.perf_counter() - start
    subprocess.run(["sync"], check=True)
    return plain, time.perf_counter() - start, out


def rsync_literal(stats: str) -> int:
    match = re.search(r"Literal data: ([\d,]+)", stats)
    return int(match.group(1).replace(",", "")) if match else -1


def fmt_mib(n: int) -> str:
    return f"{n / MIB:8.1f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 MiB instead of 2 GiB")
    args = parser.parse_args()
    if shutil.which("rsync") is None:
        print("bench/mirror.py needs rsync: apt-get install rsync (make bench installs it)", file=sys.stderr)
        return 2
    image_mib = 10 if args.quick else 100
    rng = random.Random(2024)
    work = Path(tempfile.mkdtemp(prefix="farside-bench-mirror-"))
    try:
        source = work / "source"
        make_source(source, image_mib, rng)
        data = sum(p.stat().st_blocks * 512 for p in source.glob("*.img"))
        virtual = IMAGES * image_mib * MIB
        print(f"source: {IMAGES} images, {fmt_mib(virtual).strip()} in all, {fmt_mib(data).strip()} of data")
        want = digest(source)

        print("\n1. initial sync                 time   +sync   MiB/s(data)   allocated at target")
        cp_s, cp_sync_s, _ = timed(["cp", "-r", "--sparse=always", str(source), str(work / "cp")])
        print(f"   cp --sparse=always        {cp_s:6.2f}s {cp_sync_s:6.2f}s   {data / MIB / cp_s:8.0f}     "
              f"{fmt_mib(allocated(work / 'cp'))}")  # fmt: skip
        rs_s, rs_sync_s, _ = timed(["rsync", "-a", "--sparse", f"{source}/", str(work / "rsync")])
        print(f"   rsync -a --sparse         {rs_s:6.2f}s {rs_sync_s:6.2f}s   {data / MIB / rs_s:8.0f}     "
              f"{fmt_mib(allocated(work / 'rsync'))}")  # fmt: skip
        mirrors = Mirrors(work / "state")
        mirrors.create("bench", source, work / "mirror", interval=0)
        start = time.perf_counter()
        first = mirrors.sync("bench")
        m_s = time.perf_counter() - start
        print(f"   farside mirror (durable)  {m_s:6.2f}s {m_s:6.2f}s   {data / MIB / m_s:8.0f}     "
              f"{fmt_mib(allocated(work / 'mirror'))}")  # fmt: skip
        st = first.stats
        print(f"   mirror bytes: read {fmt_mib(st.bytes_read)}, sent {fmt_mib(st.bytes_sent)}, "
              f"written {fmt_mib(st.bytes_written)}")  # fmt: skip
        for name in ("cp", "rsync", "mirror"):
            assert digest(work / name) == want, f"{name}'s copy differs from the source"
        ratio = cp_s / m_s
        print(f"   throughput vs cp: {ratio:.2f}x (target >= 0.9x); vs cp+sync: {cp_sync_s / m_s:.2f}x")

        print("\n2. resync after changing 1% of chunks")
        mirrors.split("bench")
        changed = change_chunks(source, image_mib, rng)
        want = digest(source)
        subprocess.run(["sync"], check=True)
        rs_s, rs_sync_s, stats = timed(
            ["rsync", "-a", "--inplace", "--no-whole-file", "--stats", f"{source}/", str(work / "rsync")]
        )
        start = time.perf_counter()
        again = mirrors.resync("bench")
        m_s = time.perf_counter() - start
        for name in ("rsync", "mirror"):
            assert digest(work / name) == want, f"{name}'s copy differs from the source"
        st = again.stats
        print(f"   changed: {fmt_mib(changed).strip()}")
        print(f"   rsync --inplace --no-whole-file  {rs_s:6.2f}s (+sync {rs_sync_s:.2f}s), "
              f"literal data sent {fmt_mib(rsync_literal(stats)).strip()}")  # fmt: skip
        print(f"   farside mirror resync            {m_s:6.2f}s (durable)")
        print(f"   mirror bytes: read {fmt_mib(st.bytes_read)}, sent {fmt_mib(st.bytes_sent)}, "
              f"written {fmt_mib(st.bytes_written)}")  # fmt: skip
        print(f"   sent/changed {st.bytes_sent / changed:.2f}x (target <= 1.1x), "
              f"written/changed {st.bytes_written / changed:.2f}x (target <= 2.2x), "
              f"time vs rsync {m_s / rs_s:.2f}x (target < 1)")  # fmt: skip
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

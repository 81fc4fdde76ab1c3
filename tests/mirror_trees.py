"""Helpers for the mirror's tests: files with data where asked, and a tree's content to compare."""

from __future__ import annotations

import os
import random
from pathlib import Path

MIB = 1 << 20


def fill(path: Path, size: int, seed: int, data_at: tuple[int, ...] = ()) -> None:
    """A file of ``size`` bytes: random data throughout, or only in the 1 MiB chunks ``data_at``."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        if data_at:
            f.truncate(size)
            for chunk in data_at:
                f.seek(chunk * MIB)
                f.write(rng.randbytes(min(MIB, size - chunk * MIB)))
        else:
            f.write(rng.randbytes(size))


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` but the mirror's own directory, with its content."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".farside-mirror"]
        for f in filenames:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = p.read_bytes()
    return out

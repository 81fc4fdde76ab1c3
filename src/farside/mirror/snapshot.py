"""A point-in-time copy of a mirror's target: a sparse copy of its tree, usable as a LUN.

Holes stay holes (SEEK_DATA), so a snapshot of sparse images costs only their data. The copy is
built in a sibling directory and renamed into place, so ``DIR`` either does not exist or is whole.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from farside.mirror.sparse import data_extents
from farside.storage.files import fsync_dir
from farside.storage.mirror_marker import MARKER_DIR

_PIECE = 1 << 20


def copy_tree(source: Path, dest: Path) -> int:
    """Copy the tree at ``source`` (without the mirror's own directory) to the new ``dest``; bytes copied."""
    staging = dest.with_name(f".{dest.name}.partial-{uuid.uuid4().hex[:8]}")
    copied = 0
    try:
        staging.mkdir()
        for dirpath, dirnames, filenames in os.walk(source):
            rel = os.path.relpath(dirpath, source)
            if rel == ".":
                dirnames[:] = [d for d in dirnames if d != MARKER_DIR]
            out_dir = staging / rel
            for d in dirnames:
                (out_dir / d).mkdir()
            for f in filenames:
                src = Path(dirpath) / f
                if src.is_symlink() or not src.is_file():
                    continue
                copied += copy_file(src, out_dir / f)
            fsync_dir(out_dir)
        if dest.exists():
            dest.rmdir()  # an empty directory given as the destination is replaced
        staging.rename(dest)
        fsync_dir(dest.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return copied


def copy_file(src: Path, dst: Path) -> int:
    """A sparse, durable copy of one file with its mode and times; the data bytes copied."""
    copied = 0
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        size = os.fstat(fin.fileno()).st_size
        for start, end in data_extents(fin.fileno(), size):
            pos = start
            while pos < end:
                data = os.pread(fin.fileno(), min(_PIECE, end - pos), pos)
                if not data:
                    break
                os.pwrite(fout.fileno(), data, pos)
                pos += len(data)
                copied += len(data)
        fout.truncate(size)
        fout.flush()
        os.fsync(fout.fileno())
    shutil.copystat(src, dst)
    return copied

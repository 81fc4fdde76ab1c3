"""A mirror finishes what a crash left halfway, and copes with what a source can do to its tree."""

from __future__ import annotations

import shutil
from pathlib import Path

from farside.mirror.pair import Mirrors
from farside.storage.mirror_marker import SOURCE, TARGET, Marker, mirror_target, read_marker, write_marker


def test_a_file_that_becomes_a_directory_and_back(mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
    mirrors.sync(mirror)
    (source / "full.img").unlink()
    (source / "full.img").mkdir()
    (source / "full.img" / "disk.img").write_bytes(b"b" * 100)
    mirrors.sync(mirror)
    assert (target / "full.img" / "disk.img").read_bytes() == b"b" * 100
    shutil.rmtree(source / "full.img")
    (source / "full.img").write_bytes(b"a file again")
    mirrors.sync(mirror)
    assert (target / "full.img").read_bytes() == b"a file again"
    assert not mirrors.status(mirror)["apply_pending"]
    mirrors.split(mirror)


def test_split_again_finishes_a_split_that_died_before_its_marker(mirrors: Mirrors, mirror: str, target: Path) -> None:
    mirrors.sync(mirror)
    mirrors.split(mirror)
    # As if the split died after saving its record, before writing the inactive marker.
    write_marker(target, Marker(mirror, str(mirrors.path), TARGET, True))
    assert mirror_target(target) == mirror
    mirrors.split(mirror)
    assert mirror_target(target) is None  # pluggable now


def test_reverse_again_finishes_a_reverse_that_died_before_its_markers(
    mirrors: Mirrors, mirror: str, source: Path, target: Path
) -> None:
    mirrors.sync(mirror)
    mirrors.split(mirror)
    mirrors.reverse(mirror)
    # As if the reverse died after saving its record, before swapping the markers.
    write_marker(source, Marker(mirror, str(mirrors.path), SOURCE, False))
    write_marker(target, Marker(mirror, str(mirrors.path), TARGET, False))
    mirrors.reverse(mirror)  # a retry finishes it: reversed once, not back again
    record = mirrors.load(mirror)
    assert (Path(record.source), Path(record.target)) == (target, source)
    assert [read_marker(p).role for p in (target, source)] == [SOURCE, TARGET]  # type: ignore[union-attr]

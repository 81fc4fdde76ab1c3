"""A source LUN with a few images (one sparse) and a mirror of it, for the mirror's unit tests."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from farside.mirror.pair import Mirrors
from mirror_trees import MIB, fill


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "site-a" / "lun1"
    (src / ".farside-sr" / "vdis").mkdir(parents=True)
    (src / ".farside-sr" / "sr.json").write_text('{"uuid": "sr-1", "name_label": "LUN", "format": 1}\n')
    fill(src / "full.img", 3 * MIB + 100, seed=1)
    fill(src / "sparse.img", 64 * MIB, seed=2, data_at=(0, 40))
    age(src)
    return src


def age(root: Path) -> None:
    """Date every file an hour back, as files not written lately are: not "racily" recent."""
    old = time.time_ns() - 3600 * 10**9
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(old, old))


@pytest.fixture
def mirrors(tmp_path: Path) -> Mirrors:
    return Mirrors(tmp_path / "state")


@pytest.fixture
def target(tmp_path: Path) -> Path:
    (tmp_path / "site-b").mkdir()
    return tmp_path / "site-b" / "lun1"


@pytest.fixture
def mirror(mirrors: Mirrors, source: Path, target: Path) -> str:
    mirrors.create("m", source, target, interval=0)
    return "m"

"""LUN roots: which paths may be a root, and which may be a LUN under given roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from farside.errors import InvalidValue
from farside.storage.roots import check_lun, check_root, check_roots, system_dir


@pytest.mark.parametrize(
    "path", ["/", "/etc", "/etc/x", "/dev/shm", "/proc/1", "/sys", "/usr/lib", "/boot", "/run/x", "/tmp", "/var"]
)
def test_system_and_top_level_directories_are_never_luns(path: str) -> None:
    assert system_dir(path) is not None
    with pytest.raises(InvalidValue):
        check_lun(path, ["/"])  # not even under a root that covers everything


@pytest.mark.parametrize("path", ["/srv/luns", "/tmp/pytest-of-root/x", "/var/lib/farside/luns", "/home/ops/luns"])
def test_directories_below_the_top_level_may_be(path: str) -> None:
    assert system_dir(path) is None


def test_a_lun_must_be_a_plain_path_inside_a_root(tmp_path: Path) -> None:
    root = tmp_path / "luns"
    (root / "real").mkdir(parents=True)
    (root / "link").symlink_to(root / "real")
    roots = [str(root)]
    assert check_lun(root / "real", roots) == root / "real"
    assert check_lun(root / "not-yet", roots) == root / "not-yet"
    assert check_lun(root, roots) == root
    for bad in (root / "link", root / "link" / "below", f"{root}/../luns/real", "luns/real", tmp_path, f"{root}x"):
        with pytest.raises(InvalidValue) as info:
            check_lun(bad, roots)
        assert info.value.failure[1] == "path" and str(root) in info.value.failure[2], bad
    with pytest.raises(InvalidValue) as info:
        check_lun(root / "real", [])
    assert "no LUN roots yet" in info.value.failure[2]


def test_roots_are_existing_real_directories(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert check_roots([tmp_path / "a", str(tmp_path / "a")]) == [str(tmp_path / "a")]
    for bad in ("/etc", "/", tmp_path / "b", tmp_path / "missing", "relative", f"{tmp_path}/a/../a"):
        with pytest.raises(InvalidValue) as info:
            check_root(bad)
        assert info.value.failure[1] == "lun_roots", bad

"""Reflink copies, and the one VDI copy path (image.copy) that falls back to a sparse copy."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from farside.storage import image, reflink
from farside.storage.errors import ImageUnsafe


def test_no_reflink_leaves_nothing(tmp_path: Path) -> None:
    """Where the filesystem has no reflinks (ext4 here), clone says so and leaves no target."""
    if reflink.supported(tmp_path):
        pytest.skip("this filesystem has reflinks")
    source = tmp_path / "a.raw"
    source.write_bytes(b"x" * 8192)
    assert reflink.clone(source, tmp_path / "b.raw") is False
    assert not (tmp_path / "b.raw").exists()


def test_clone_refuses_an_existing_target_and_symlinks(tmp_path: Path) -> None:
    """A reflink never replaces a file, nor follows a link planted at either name."""
    source = tmp_path / "a.raw"
    source.write_bytes(b"x" * 4096)
    (tmp_path / "taken").write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        reflink.clone(source, tmp_path / "taken")
    assert (tmp_path / "taken").read_bytes() == b"keep"
    (tmp_path / "link").symlink_to(source)
    with pytest.raises(OSError):
        reflink.clone(tmp_path / "link", tmp_path / "c.raw")


def test_copy_is_sparse_and_self_contained(tmp_path: Path) -> None:
    """Without reflinks the copy is a sparse full copy with the same content."""
    source = tmp_path / "a.raw"
    with open(source, "wb") as f:
        f.write(b"data" * 1024)
        f.truncate(64 << 20)
    info, linked = image.copy(source, "raw", tmp_path / "b.raw")
    assert info.virtual_size == 64 << 20
    assert (tmp_path / "b.raw").read_bytes()[:4096] == source.read_bytes()[:4096]
    assert linked or (tmp_path / "b.raw").stat().st_blocks * 512 < 1 << 20


def test_copy_refuses_an_image_with_a_backing_file(tmp_path: Path) -> None:
    """An image naming a backing file is never copied (docs/security.md: self-contained images)."""
    base = tmp_path / "base.qcow2"
    image.create(base, "qcow2", 1 << 20)
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(overlay)],
                   check=True)  # fmt: skip
    with pytest.raises(ImageUnsafe):
        image.copy(overlay, "qcow2", tmp_path / "copy.qcow2")
    assert not (tmp_path / "copy.qcow2").exists()

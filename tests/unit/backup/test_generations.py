"""The Pool Metadata Backup VDI's layout: generations written, read back, rotated; hostile images refused."""

from __future__ import annotations

import io
import tarfile
import uuid as uuidlib

import pytest

from farside.backup import generations, tar
from farside.backup.generations import BackupInvalid

VM = "5b0c3c4e-1111-4222-8333-944455556666"
SR = "0e2a1f3c-aaaa-4bbb-8ccc-dddddddddddd"
POOL = "7d4a3f11-0000-4000-8000-000000000001"


def _files(tag: bytes) -> dict[str, bytes]:
    return {"manifest.json": b"{}", f"{POOL}.db": b"<database/>" + tag, f"all/{VM}.vmmeta": b"meta" + tag,
            f"by-sr/{SR}": f"{VM}\n".encode(), "vapps.json": b"[]"}  # fmt: skip


def _image(*dates: str) -> io.BytesIO:
    image = io.BytesIO()
    for date in dates:
        source = io.BytesIO(image.getvalue())
        kept = generations.index(source) if image.getvalue() else []
        out = io.BytesIO()
        generations.write(out, source, kept, date, _files(date.encode()))
        image = io.BytesIO(out.getvalue() + bytes(4096))  # the zeros after the archive, as in the VDI
    return image


def test_vdi_uuid_is_xapis() -> None:
    namespace = uuidlib.UUID("e93e0639-2bdb-4a59-8b46-352b3f408c19")
    assert generations.vdi_uuid(SR) == str(uuidlib.uuid5(namespace, SR))


def test_written_generations_read_back_in_order() -> None:
    image = _image("2026-01-01-00-00-00", "2026-01-02-00-00-00")
    found = generations.index(image)
    assert [g.date for g in found] == ["2026-01-01-00-00-00", "2026-01-02-00-00-00"]
    newest = found[1]
    assert generations.read(image, newest.vmmeta()[VM]) == b"meta2026-01-02-00-00-00"
    db = newest.db()
    assert db is not None and generations.read(image, db) == b"<database/>2026-01-02-00-00-00"
    total = generations.size(found[1:], _files(b"x"))
    out = io.BytesIO()
    generations.write(out, image, found[1:], "2026-01-03-00-00-00", _files(b"x"))
    assert len(out.getvalue()) == total
    assert [g.date for g in generations.index(io.BytesIO(out.getvalue()))] == [
        "2026-01-02-00-00-00",
        "2026-01-03-00-00-00",
    ]


def test_a_fresh_vdi_holds_no_generation() -> None:
    assert generations.index(io.BytesIO(bytes(1 << 16))) == []


def test_new_generation_must_be_newest() -> None:
    image = _image("2026-01-02-00-00-00")
    with pytest.raises(ValueError):
        generations.write(io.BytesIO(), image, generations.index(image), "2026-01-01-00-00-00", {})


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ([("not-a-backup", b"x")], "not a metadata backup"),
        ([(generations.MARKER, b""), ("metadata/2026-01-01-00-00-00/../../etc/passwd", b"x")], "unexpected file"),
        ([(generations.MARKER, b""), (f"metadata/2026-01-01-00-00-00/all/{VM}.sh", b"x")], "unexpected file"),
        ([(generations.MARKER, b""), ("/etc/passwd", b"x")], "unexpected file"),
        ([(generations.MARKER, b""), ("metadata/x/manifest.json", b"x")], "unexpected file"),
        ([(generations.MARKER, b"")] + [("metadata/2026-01-01-00-00-00/vapps.json", b"[]")] * 2, "twice"),
    ],
)
def test_hostile_images_are_refused(members: list[tuple[str, bytes]], reason: str) -> None:
    image = io.BytesIO(b"".join(tar.member(n, d) for n, d in members) + tar.END)
    with pytest.raises(BackupInvalid, match=reason):
        generations.index(image)


def test_oversized_and_cut_short_members_are_refused() -> None:
    huge = tar.header("metadata/2026-01-01-00-00-00/vapps.json", generations.MAX_OTHER + 1)
    with pytest.raises(BackupInvalid, match="at most"):
        generations.index(io.BytesIO(tar.member(generations.MARKER, b"") + huge))
    cut = tar.member(generations.MARKER, b"") + tar.header("metadata/2026-01-01-00-00-00/vapps.json", 5000)
    with pytest.raises(BackupInvalid, match="ends inside"):
        generations.index(io.BytesIO(cut + b"[]"))
    link = tarfile.TarInfo("metadata/2026-01-01-00-00-00/vapps.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"  # a link member: never taken
    header = link.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    with pytest.raises(BackupInvalid, match="not a regular file"):
        generations.index(io.BytesIO(tar.member(generations.MARKER, b"") + header + tar.END))

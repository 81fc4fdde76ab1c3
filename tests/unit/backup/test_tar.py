"""XVA tar members: headers the standard tar module reads, and a reader that takes only plain files."""

from __future__ import annotations

import io
import tarfile

import pytest

from farside.backup import tar
from farside.backup.errors import XvaInvalid, XvaTruncated


def test_members_are_standard_tar() -> None:
    """Python's tarfile reads what tar.member writes, mode 0400 and mtime 0 as ocaml-tar writes them."""
    stream = tar.member("ova.xml", b"abc") + tar.member("Ref:1/00000000", b"x" * 513) + tar.END
    with tarfile.open(fileobj=io.BytesIO(stream)) as archive:
        members = archive.getmembers()
        assert [(m.name, m.size, m.mode, m.mtime) for m in members] == [
            ("ova.xml", 3, 0o400, 0), ("Ref:1/00000000", 513, 0o400, 0)
        ]  # fmt: skip


def test_reader_reads_members_and_skips_unread_data() -> None:
    """Members come in order; data not asked for is skipped; the end is the zero block."""
    stream = tar.member("a", b"1" * 700) + tar.member("b", b"22") + tar.END
    reader = tar.TarReader(io.BytesIO(stream).read)
    first = reader.next()
    assert first == tar.Entry("a", 700)
    second = reader.next()
    assert second == tar.Entry("b", 2) and reader.data(second) == b"22"
    assert reader.next() is None


@pytest.mark.parametrize(
    "kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.DIRTYPE, tarfile.CHRTYPE, tarfile.GNUTYPE_LONGNAME]
)
def test_links_devices_and_extensions_are_refused(kind: bytes) -> None:
    """Only regular files: links, directories, devices and GNU long names are IMPORT_ERROR."""
    info = tarfile.TarInfo("x")
    info.type = kind
    with pytest.raises(XvaInvalid, match="not a regular file"):
        tar.TarReader(io.BytesIO(info.tobuf(tarfile.GNU_FORMAT)).read).next()


def test_garbage_and_truncation() -> None:
    """A block that is not a header is IMPORT_ERROR; a stream cut inside a member is PREMATURE_EOF."""
    with pytest.raises(XvaInvalid):
        tar.TarReader(io.BytesIO(b"z" * 512).read).next()
    reader = tar.TarReader(io.BytesIO(tar.member("a", b"1" * 700)[:600]).read)
    entry = reader.next()
    assert entry is not None
    with pytest.raises(XvaTruncated):
        reader.data(entry)

"""What a "Pool Metadata Backup" VDI holds: dated generations of a pool's metadata (xe-backup-metadata).

xapi formats the VDI as ext3 and mounts it in dom0. Farside never mounts an image a guest could
have written: the VDI's raw image holds one tar archive (the strict subset the XVA reader takes:
regular files, short names), zero-padded to the VDI's size::

    .ctxs-metadata-backup                          marker, first (as xapi's)
    metadata/<YYYY-MM-DD-HH-MM-SS>/manifest.json   the pool, the date, the VMs by uuid and name
    metadata/<date>/<pool uuid>.db                 the pool database (GET /pool/xmldbdump's dump)
    metadata/<date>/all/<vm uuid>.vmmeta           each VM's metadata export (GET /export_metadata)
    metadata/<date>/by-sr/<sr uuid>                the uuids of the VMs with a disk on the SR, a line each
    metadata/<date>/vapps.json                     the vApps (xapi's scripts drop them)

Nothing in it is ever extracted to a file system: members are read by name into memory, each
bounded, and one name outside this list refuses the whole image, so no name can reach a file.
A new generation is written with the kept ones into a fresh file and renamed over the image by
the caller: a crash leaves the old image or the new one, never a mix.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import BinaryIO

from farside.backup import tar
from farside.backup.errors import XvaInvalid, XvaTruncated
from farside.errors import InvalidValue

MARKER = ".ctxs-metadata-backup"
MARKER_TEXT = b"Farside pool metadata backup, format 1\n"
DATE_FORMAT = "%Y-%m-%d-%H-%M-%S"
MANIFEST, VAPPS = "manifest.json", "vapps.json"
# xapi's namespace for the backup VDI's uuid (scripts/xe-backup-metadata: uuid5 of the SR's uuid).
NAMESPACE = uuidlib.UUID("e93e0639-2bdb-4a59-8b46-352b3f408c19")
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
UUID = re.compile(_UUID)
_NAME = re.compile(
    rf"metadata/(\d{{4}}-\d\d-\d\d-\d\d-\d\d-\d\d)/"
    rf"({re.escape(MANIFEST)}|{re.escape(VAPPS)}|{_UUID}\.db|all/{_UUID}\.vmmeta|by-sr/{_UUID})"
)
# A database dump may be large (GET /pool/xmldbdump takes up to 512 MiB); anything else is small.
MAX_DUMP, MAX_OTHER = 512 << 20, 32 << 20
_COPY = 1 << 20


class BackupInvalid(InvalidValue):
    """An image that is not a metadata backup: ``["INVALID_VALUE", "metadata backup", reason]``."""

    def __init__(self, reason: str) -> None:
        super().__init__("metadata backup", reason)


def vdi_uuid(sr_uuid: str) -> str:
    """The uuid of the backup VDI on the SR ``sr_uuid``, as xapi derives it."""
    return str(uuidlib.uuid5(NAMESPACE, sr_uuid))


@dataclass(frozen=True)
class Member:
    """A file of a generation: where its data starts in the image, and its size."""

    offset: int
    size: int


@dataclass
class Generation:
    date: str
    members: dict[str, Member] = field(default_factory=dict)  # by name inside the generation

    def vmmeta(self) -> dict[str, Member]:
        """The VMs' metadata exports, by VM uuid."""
        return {n[4:-7]: m for n, m in self.members.items() if n.startswith("all/")}

    def db(self) -> Member | None:
        return next((m for n, m in self.members.items() if n.endswith(".db")), None)


def index(fh: BinaryIO) -> list[Generation]:
    """The generations in the image ``fh``, oldest first; [] for an image never written (zeros)."""
    reader = tar.TarReader(fh.read)
    try:
        first = reader.next()
        if first is None:
            return []
        if first.name != MARKER:
            raise BackupInvalid(f"the image starts with {first.name!r}, not {MARKER}: it is not a metadata backup")
        found: dict[str, Generation] = {}
        while (entry := reader.next()) is not None:
            match = _NAME.fullmatch(entry.name)
            if match is None:
                raise BackupInvalid(f"unexpected file {entry.name!r}")
            date, name = match.groups()
            limit = MAX_DUMP if name.endswith(".db") else MAX_OTHER
            if entry.size > limit:
                raise BackupInvalid(f"{entry.name} holds {entry.size} bytes; at most {limit} are read")
            generation = found.setdefault(date, Generation(date))
            if name in generation.members:
                raise BackupInvalid(f"{entry.name} is there twice")
            generation.members[name] = Member(reader.consumed, entry.size)
    except XvaInvalid as exc:  # a damaged header
        raise BackupInvalid(exc.describe()) from None
    except XvaTruncated:
        raise BackupInvalid("the image ends inside a file") from None
    return [found[d] for d in sorted(found)]


def read(fh: BinaryIO, member: Member) -> bytes:
    fh.seek(member.offset)
    data = fh.read(member.size)
    if len(data) != member.size:
        raise BackupInvalid("the image ends inside a file")
    return data


def size(kept: list[Generation], files: dict[str, bytes]) -> int:
    """The bytes ``write`` writes for these generations and the new one's ``files``."""
    sizes = [len(MARKER_TEXT), *(m.size for g in kept for m in g.members.values()), *map(len, files.values())]
    return sum(tar.BLOCK + n + len(tar.padding(n)) for n in sizes) + len(tar.END)


def write(out: BinaryIO, source: BinaryIO | None, kept: list[Generation], date: str, files: dict[str, bytes]) -> None:
    """The archive: the marker, the ``kept`` generations copied from ``source``, then ``files`` as
    generation ``date``; in date order."""
    out.write(tar.member(MARKER, MARKER_TEXT))
    for generation in kept:
        if generation.date >= date:
            raise ValueError(f"generation {generation.date} is not older than the new one ({date})")
        assert source is not None
        for name, member in generation.members.items():
            out.write(tar.header(f"metadata/{generation.date}/{name}", member.size))
            source.seek(member.offset)
            left = member.size
            while left:
                data = source.read(min(left, _COPY))
                if not data:
                    raise BackupInvalid("the image ends inside a file")
                out.write(data)
                left -= len(data)
            out.write(tar.padding(member.size))
    for name, data in files.items():
        if _NAME.fullmatch(f"metadata/{date}/{name}") is None:
            raise ValueError(f"{name!r} is no name of a generation")
        out.write(tar.member(f"metadata/{date}/{name}", data))
    out.write(tar.END)

"""``farside metadata inspect PATH``: what a metadata VDI's image holds, for operators at a DR site."""

from __future__ import annotations

import argparse
from pathlib import Path

from farside.cli.pool import pool_uuid
from farside.replication import format as fmt
from farside.replication.authenticity import Keyring


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("metadata", help="look at metadata VDIs")
    sub = p.add_subparsers(dest="metadata_command", required=True, metavar="COMMAND")
    inspect = sub.add_parser("inspect", help="show what a metadata VDI image holds")
    inspect.add_argument("path", type=Path, help="the metadata VDI's image file (on the LUN: <vdi uuid>.raw)")
    inspect.add_argument(
        "--data-dir",
        type=Path,
        help="a pool's data directory: check the records with the DR keys it holds (its own and those it trusts)",
    )
    inspect.set_defaults(run=inspect_image)


def inspect_image(args: argparse.Namespace) -> int:
    path: Path = args.path
    if not path.is_file():
        raise ValueError(f"{path} is not a file; give the metadata VDI's image, e.g. LUN/<vdi uuid>.raw")
    keys = Keyring(args.data_dir, pool_uuid(args.data_dir)).key_for if args.data_dir is not None else None
    with open(path, "rb") as fh:
        snapshot, header, halves = fmt.newest(fh, keys=keys)
    print(f"file:        {path} ({path.stat().st_size} bytes)")
    if header.valid:
        current = "none" if header.current == fmt.NO_HALF else str(header.current)
        print(f"header:      format {header.version}, halves of {header.half_size} bytes, current half {current}")
    else:
        print("header:      missing or damaged (the halves are read without it)")
    errors = 0
    for half in halves:
        errors += half.checksum_errors
        if half.full is None:
            print(f"half {half.index}:      no full copy ({half.stopped})")
            continue
        print(
            f"half {half.index}:      full copy at generation {half.full.generation}, {len(half.deltas)} deltas, "
            f"up to generation {half.generation}; {half.end} bytes used; reading stopped: {half.stopped}"
        )
    for half in halves:
        for problem in half.problems:
            print(f"problem:     {problem} (skipped)")
    if snapshot is None:
        print("result:      no complete copy of a pool's metadata")
        return 1
    counts = ", ".join(f"{cls} {len(rows)}" for cls, rows in sorted(snapshot.objects.items()) if rows)
    print(f"pool:        {snapshot.pool_name} ({snapshot.pool_uuid})")
    print(f"generation:  {snapshot.generation}, written {snapshot.written} (from half {snapshot.half})")
    print(f"written by:  Farside {snapshot.farside_version}, schema {snapshot.schema_version}")
    print(f"objects:     {counts}")
    print(f"checksums:   {'no errors' if errors == 0 else f'{errors} damaged record(s) found and skipped'}")
    if keys is None:
        print("authentic:   not checked (give --data-dir of a pool holding this pool's DR key)")
        return 0
    verdicts = {True: "yes: every record used carries the pool's MAC", None: "unknown: no DR key for this pool there"}
    print(f"authentic:   {verdicts.get(snapshot.authenticated, 'NO: fails authentication under the pool key')}")
    return 0 if snapshot.authenticated else 1

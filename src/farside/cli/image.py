"""``farside image``: make disk images, for now a RAW test disk that boots without an OS."""

from __future__ import annotations

import argparse
from pathlib import Path

from farside.storage.bootable import COUNTER_SECTOR, MAX_TAG, write_bootable


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("image", help="make disk images")
    images = p.add_subparsers(dest="image_command", required=True, metavar="KIND")

    b = images.add_parser(
        "bootable",
        help="a RAW test disk whose boot sector prints its tag and ticks on COM1",
        description=(
            "Write a new RAW disk image whose boot sector prints 'BOOT <tag>' on COM1, then "
            "'TICK <n>' about every 110 ms, and powers off on the ACPI power button."
        ),
    )
    b.add_argument("out", type=Path, help="the image file to create (must not exist)")
    b.add_argument("--tag", required=True, help=f"text the guest prints after BOOT: 1-{MAX_TAG} printable ASCII")
    b.add_argument("--size-mib", type=int, default=1, help="image size in MiB, at least 1 (default 1)")
    b.add_argument(
        "--counter",
        action="store_true",
        help=f"make the guest write its tick count to sector {COUNTER_SECTOR} of its disk at every tick",
    )
    b.set_defaults(run=bootable)


def bootable(args: argparse.Namespace) -> int:
    out: Path = args.out
    try:
        write_bootable(out, args.tag, size_mib=args.size_mib, counter=args.counter)
    except FileExistsError as exc:
        raise ValueError(f"{out} exists already; 'farside image bootable' writes only new files") from exc
    except OSError as exc:
        raise ValueError(f"cannot write {out}: {exc.strerror or exc}") from exc
    extra = f", counter in sector {COUNTER_SECTOR}" if args.counter else ""
    print(f"wrote {out}: RAW, {args.size_mib} MiB, tag {args.tag!r}{extra}")
    return 0

"""xe's pool database commands: pool-dump-database and pool-restore-database (GET/PUT /pool/xmldbdump)."""

from __future__ import annotations

import os
from pathlib import Path

from farside.cli.xe.command import Command, Context
from farside.cli.xe.failures import XeError
from farside.dr.session import XmlRpcSession

PATH = "/pool/xmldbdump"


def _session(ctx: Context) -> XmlRpcSession:
    if not isinstance(ctx.session, XmlRpcSession):
        raise XeError("This command needs an HTTP connection to the pool server.")
    return ctx.session


def dump_database(ctx: Context) -> None:
    """The dump goes to a new file beside the target, renamed into place once complete."""
    target = Path(ctx.params["file-name"])
    data = _session(ctx).transfer("GET", PATH)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with open(partial, "wb") as f:
            f.write(data)
            os.fsync(f.fileno())
        partial.replace(target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise XeError(f"Cannot write {target}: {exc.strerror}") from None


def restore_database(ctx: Context) -> None:
    dry_run = ctx.params.flag("dry-run")
    if not dry_run and not ctx.params.flag("force"):
        raise XeError(
            "This operation is dangerous and may cause data loss. This operation must be forced (use --force)."
        )
    path = Path(ctx.params["file-name"])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise XeError(f"Cannot read {path}: {exc.strerror}") from None
    answer = _session(ctx).transfer("PUT", PATH, data, dry_run="true" if dry_run else "false")
    ctx.printer.raw(answer)


COMMANDS = [
    Command(
        "pool-dump-database",
        dump_database,
        reqd=("file-name",),
        help="Write the pool's database (xapi's XML dump) to file-name.",
    ),
    Command(
        "pool-restore-database",
        restore_database,
        reqd=("file-name",),
        optn=("dry-run", "force"),
        help="Restore the pool's database from a dump of this pool; dry-run=true only checks it (else --force).",
    ),
]

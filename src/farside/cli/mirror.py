"""``farside mirror``: replicate LUN directories to the DR site, split, reverse, resync, snapshot.

Every command takes ``--state-dir`` (default: ``FARSIDE_MIRROR_DIR``, else /var/lib/farside/mirror)
and works whether or not a daemon (``farside mirror run``) is running: both coordinate through the
mirror's lock in the state directory. See docs/mirror.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from farside.config import DB_FILE, mirror_dir_from_env
from farside.db import Database
from farside.errors import InvalidValue
from farside.mirror.cycle import CycleResult
from farside.mirror.daemon import Daemon
from farside.mirror.pair import DEFAULT_INTERVAL_S, Mirrors
from farside.storage.roots import check_lun, check_plain


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "mirror",
        help="replicate LUN directories (the storage array's job): split, reverse, resync, snapshot",
        description="Replicate LUN directories to a DR site, as a storage array mirrors LUNs. See docs/mirror.md.",
    )
    sub = p.add_subparsers(dest="mirror_command", required=True, metavar="ACTION")

    def add(name: str, help_: str, run: Any, named: bool = True) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_, description=help_)
        c.add_argument(
            "--state-dir",
            type=Path,
            default=None,
            help="where the mirrors' state is kept (default: $FARSIDE_MIRROR_DIR, else /var/lib/farside/mirror)",
        )
        if named:
            c.add_argument("name", metavar="NAME", help="the mirror's name")
        c.set_defaults(run=run)
        return c

    c = add("create", "create a mirror from SOURCE to TARGET; the first cycle copies everything", create)
    c.add_argument(
        "--source", type=Path, required=True, help="the directory to replicate: a LUN, or a directory of LUNs"
    )
    c.add_argument("--target", type=Path, required=True, help="the copy at the DR site (created if missing)")
    c.add_argument(
        "--target-pool",
        type=Path,
        metavar="DATA_DIR",
        help="the data directory of the pool that will use the target: the target must be under its LUN roots",
    )
    c.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        help=f"seconds between the starts of the daemon's cycles (default {DEFAULT_INTERVAL_S:g}; 0: back to back)",
    )
    c.add_argument("--bwlimit", type=float, default=None, metavar="MIB_PER_S", help="at most this many MiB/s sent")

    c = add("run", "the daemon: replication cycles until SIGTERM (all mirrors, or those named)", run, named=False)
    c.add_argument("names", nargs="*", metavar="NAME", help="the mirrors to serve (default: all, including new ones)")
    add("sync", "run one cycle now and wait for it", sync)
    c = add("status", "state, last cycle, RPO, bytes sent, errors and lagging files", status, named=False)
    c.add_argument("name", nargs="?", metavar="NAME", help="one mirror (default: all)")
    c.add_argument("--json", action="store_true", help="print JSON")
    add("pause", "stop replicating for now; the target stays read-only", pause)
    add("unpause", "replicate again after pause", unpause)
    add("split", "stop replicating; the target (a complete cycle) becomes writable and pluggable", split)
    add("reverse", "swap source and target, for failback; only while split", reverse)
    add("resync", "from split back to replicating, copying only changed chunks", resync)
    c = add("snapshot", "copy the last complete cycle to a new directory, usable as a LUN", snapshot)
    c.add_argument("dir", type=Path, metavar="DIR", help="the new directory (must not exist, or be empty)")
    add("delete", "forget the mirror; source and target stay as they are, the target pluggable", delete)


def _mirrors(args: argparse.Namespace) -> Mirrors:
    """The state directory of an existing set of mirrors: one that is not there is a mistake (a
    typo would otherwise answer "no mirrors", or a daemon would serve nothing, silently)."""
    path: Path = args.state_dir if args.state_dir is not None else mirror_dir_from_env()
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise ValueError(
            f"the mirror state directory {path} {what}: give the --state-dir your mirrors use "
            f"(or set FARSIDE_MIRROR_DIR); 'farside mirror create' makes a new one"
        )
    return Mirrors(path)


def create(args: argparse.Namespace) -> int:
    roots = None if args.target_pool is None else _lun_roots(args.target_pool)
    source = _checked("--source", args.source, None)
    target = _checked("--target", args.target, roots)
    record = Mirrors(args.state_dir if args.state_dir is not None else mirror_dir_from_env()).create(
        args.name, source, target, args.interval, args.bwlimit
    )
    print(f"created mirror {record.name}: {record.source} -> {record.target}; run 'farside mirror sync {record.name}'")
    print("or 'farside mirror run' to replicate; the target cannot be plugged until the mirror is split")
    return 0


def _lun_roots(data_dir: Path) -> list[str]:
    """The LUN roots of the pool in ``data_dir``, read from its database (its server may run)."""
    if not (data_dir / DB_FILE).is_file():
        raise ValueError(f"--target-pool {data_dir} holds no pool: give the data directory 'farside init' made")
    db = Database.open(data_dir / DB_FILE)
    try:
        with db.read() as tx:
            roots: list[str] = tx.get_field("pool", tx.refs("pool")[0], "lun_roots")
    finally:
        db.close()
    return roots


def _checked(flag: str, path: Path, roots: list[str] | None) -> Path:
    """A mirror's directory: plain (no '..', no symlink), no system directory, and under the
    target pool's LUN roots when those are known; the target becomes a LUN once split."""
    if ".." in path.parts:
        raise ValueError(f"{flag} {path}: a mirror's directory must not contain '..'")
    try:
        full = Path(os.path.abspath(path))
        return check_plain(full, "a mirror's directory") if roots is None else check_lun(full, roots)
    except InvalidValue as exc:
        raise ValueError(f"{flag} {exc.params[-1]}") from None


def run(args: argparse.Namespace) -> int:
    def report(line: str) -> None:
        print(f"{_time(None)} {line}", flush=True)

    def notice(line: str) -> None:
        print(f"{_time(None)} {line}", file=sys.stderr, flush=True)

    daemon = Daemon(_mirrors(args), list(args.names), report, notice)
    daemon.install_signals()
    report(f"serving {', '.join(args.names) or 'all mirrors'} in {daemon.mirrors.path}")
    daemon.run()
    report("stopped")
    return 0


def sync(args: argparse.Namespace) -> int:
    _print_cycle(args.name, _mirrors(args).sync(args.name))
    return 0


def _print_cycle(name: str, result: CycleResult) -> None:
    s = result.stats
    print(
        f"{name}: cycle {s.number} complete: {s.files_changed} file(s) changed, {_bytes(s.bytes_read)} read, "
        f"{_bytes(s.bytes_sent)} sent, {_bytes(s.bytes_written)} written in {s.finished - s.started:.2f}s"
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for rel in result.lagging:
        print(f"warning: {rel} kept changing while read; it is lagging and will be taken next cycle", file=sys.stderr)


def status(args: argparse.Namespace) -> int:
    mirrors = _mirrors(args)
    names = [args.name] if args.name else mirrors.names()
    reports = [mirrors.status(n) for n in names]
    if args.json:
        print(json.dumps(reports[0] if args.name else reports, indent=1))
        return 0
    if not reports:
        print(f"no mirrors in {mirrors.path}")
    for r in reports:
        _print_status(r)
    return 0


def _print_status(r: dict[str, Any]) -> None:
    daemon = f"daemon pid {r['daemon_pid']}" if r["daemon_pid"] else "no daemon"
    print(f"{r['name']}: {r['state']}{' (failing)' if r['failing'] else ''}, {daemon}")
    print(f"  {r['source']} -> {r['target']}")
    if r["cycle"]:
        print(
            f"  last cycle {r['cycle']} at {_time(r['last_cycle_started'])}, RPO {r['rpo_seconds']:.1f}s; "
            f"sent {_bytes(r['bytes_sent'])} (total {_bytes(r['bytes_sent_total'])})"
        )
    else:
        print("  no cycle completed yet")
    if r["apply_pending"]:
        print("  an interrupted apply is pending; the next command on this mirror finishes it")
    for rel, lag in r["lagging"].items():
        rpo = "never copied" if lag["rpo_seconds"] is None else f"RPO {lag['rpo_seconds']:.1f}s"
        print(f"  lagging: {rel} ({rpo})")
    for warning in r["warnings"]:
        print(f"  warning: {warning}")
    if r["errors"]:
        last = r["errors"][-1]
        print(f"  last error at {_time(last['time'])}: {last['message']}")


def pause(args: argparse.Namespace) -> int:
    _mirrors(args).pause(args.name)
    print(f"{args.name}: paused")
    return 0


def unpause(args: argparse.Namespace) -> int:
    mirrors = _mirrors(args)
    mirrors.unpause(args.name)
    print(f"{args.name}: {mirrors.load(args.name).state}")  # replicating, or resyncing as before the pause
    return 0


def split(args: argparse.Namespace) -> int:
    record = _mirrors(args).split(args.name)
    print(f"{args.name}: split; {record.target} holds cycle {record.last_cycle.number} and can be plugged")
    return 0


def reverse(args: argparse.Namespace) -> int:
    record = _mirrors(args).reverse(args.name)
    print(f"{args.name}: reversed, now {record.source} -> {record.target}; still split, resync to replicate")
    return 0


def resync(args: argparse.Namespace) -> int:
    _print_cycle(args.name, _mirrors(args).resync(args.name))
    print(f"{args.name}: replicating")
    return 0


def snapshot(args: argparse.Namespace) -> int:
    copied = _mirrors(args).snapshot(args.name, args.dir)
    print(f"{args.name}: snapshot of the last complete cycle in {args.dir} ({_bytes(copied)} of data)")
    return 0


def delete(args: argparse.Namespace) -> int:
    _mirrors(args).delete(args.name)
    print(f"{args.name}: deleted; source and target are left as they are")
    return 0


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def _time(when: float | None) -> str:
    moment = dt.datetime.now(dt.UTC) if when is None else dt.datetime.fromtimestamp(when, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

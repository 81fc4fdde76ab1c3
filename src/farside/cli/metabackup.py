"""``farside backup-metadata`` and ``farside restore-metadata``: xapi's xe-backup-metadata and
xe-restore-metadata, through a pool server's ``/backup_metadata``, ``/metadata_backups`` and
``/restore_metadata`` (pool-admin; api/metadata_backup.py does the work).

The login comes from ``--user``/``--password-file``, else ``FARSIDE_USER``, ``FARSIDE_PASSWORD`` or
``FARSIDE_PASSWORD_FILE``. ``restore-metadata`` exits with the number of VMs it could not restore,
as xe-restore-metadata does.
"""

from __future__ import annotations

import argparse
import getpass
import json
from typing import Any

from farside.api.metadata_backup import DEFAULT_KEEP, MODES
from farside.backup import generations
from farside.cli.connection import (
    DEFAULT_USER,
    LoginError,
    PasswordFileError,
    log_in,
    read_password_file,
    server_url,
)
from farside.config import client_env
from farside.dr.session import XmlRpcSession


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = commands.add_parser("backup-metadata", help="back up the pool's metadata into a VDI on an SR")
    _common(b)
    b.add_argument("--keep", type=int, default=DEFAULT_KEEP, help=f"generations to keep (default {DEFAULT_KEEP})")
    b.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    b.set_defaults(run=backup)
    r = commands.add_parser("restore-metadata", help="list or restore the metadata backups on an SR")
    _common(r)
    what = r.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="list the generations (dates) the SR's backup holds")
    what.add_argument("--date", metavar="D", help="restore this generation (YYYY-MM-DD-HH-MM-SS, as --list says)")
    r.add_argument("--dry-run", action="store_true", help="say what would be restored, change nothing")
    r.add_argument("-m", "--mode", choices=MODES, default="all", help="all VMs, or those with a disk on this SR")
    r.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    r.set_defaults(run=restore)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("server", metavar="SERVER", help="the pool server: HOST[:PORT] or an http(s):// URL")
    p.add_argument("--sr", required=True, help="the SR holding the backup VDI: its uuid or name")
    p.add_argument("--user", metavar="NAME", help=f"user name ($FARSIDE_USER; default {DEFAULT_USER})")
    p.add_argument("--password-file", metavar="F", help="a file holding the password ($FARSIDE_PASSWORD[_FILE])")
    p.add_argument("--no-verify", action="store_true", help="accept a TLS certificate that does not verify")


def _session(args: argparse.Namespace) -> XmlRpcSession:
    env = client_env()
    url = server_url(args.server)
    user = args.user or env.user
    path = args.password_file or (env.password_file if env.password is None else None)
    if path:
        try:
            found = read_password_file(path)
        except PasswordFileError as exc:
            raise ValueError(str(exc)) from None
        user, password = user or found.user, found.password
    elif env.password is not None:
        password = env.password
    else:
        password = getpass.getpass(f"password of {user or DEFAULT_USER} on {url}: ")
    try:
        return log_in(url, user or DEFAULT_USER, password, not (args.no_verify or env.no_verify))
    except LoginError as exc:
        raise ValueError(str(exc)) from None


def _sr_uuid(session: XmlRpcSession, sr: str) -> str:
    if generations.UUID.fullmatch(sr):
        return sr
    found = session.call("SR.get_by_name_label", sr)
    if len(found) != 1:
        raise ValueError(f"{len(found)} SRs are named {sr!r}: give the SR's uuid")
    return str(session.call("SR.get_uuid", found[0]))


def _call(args: argparse.Namespace, method: str, path: str, **query: str) -> Any:
    session = _session(args)
    try:
        return json.loads(session.transfer(method, path, None, sr_uuid=_sr_uuid(session, args.sr), **query))
    finally:
        session.logout()


def backup(args: argparse.Namespace) -> int:
    answer = _call(args, "POST", "/backup_metadata", keep=str(args.keep))
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    print(f"backed up {answer['vms']} VMs and {answer['vapps']} vApps as generation {answer['date']} "
          f"in VDI {answer['vdi']}")  # fmt: skip
    if answer["removed"]:
        print(f"removed generations beyond {args.keep}: {', '.join(answer['removed'])}")
    return 0


def restore(args: argparse.Namespace) -> int:
    if args.list:
        answer = _call(args, "GET", "/metadata_backups")
        if args.json:
            print(json.dumps(answer, indent=2))
        for g in [] if args.json else answer["generations"]:
            print(f"{g['date']}  {g['vms']} VMs, {g['vapps']} vApps  (pool {g['pool_name']!r}, {g['pool_uuid']})")
        return 0
    query = {"date": args.date, "mode": args.mode, "dry_run": "true" if args.dry_run else "false"}
    answer = _call(args, "POST", "/restore_metadata", **query)
    if args.json:
        print(json.dumps(answer, indent=2))
        return int(answer["errors"])
    done = "would restore" if args.dry_run else "restored"
    for vm in answer["vms"]:
        label = f"VM {vm['name']!r} ({vm['uuid']})"
        print(f"{label}: error: {vm['error']}" if "error" in vm else f"{label}: {done}")
    for app in answer["vapps"]:
        print(f"vApp {app['name']!r} ({app['uuid']}): {done} with {len(app['vms'])} VMs")
    print(f"{answer['errors']} errors")
    return int(answer["errors"])

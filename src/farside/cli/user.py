"""``farside user add|list|remove|passwd``: local accounts, changed in the pool database directly."""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path

from farside.config import DB_FILE
from farside.db import Database, users
from farside.model.roles import Role


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("user", help="manage the pool's local users")
    sub = p.add_subparsers(dest="user_command", required=True, metavar="COMMAND")

    add = sub.add_parser("add", help="add a user")
    add.add_argument("data_dir", type=Path)
    add.add_argument("name")
    roles = ", ".join(r.wire for r in sorted(Role, reverse=True))
    add.add_argument("--role", required=True, help=f"one of: {roles}")
    add.add_argument("--password", help="the password (asked for when left out)")
    add.add_argument("--fullname", default="")
    add.set_defaults(run=add_user)

    ls = sub.add_parser("list", help="list users and their roles")
    ls.add_argument("data_dir", type=Path)
    ls.set_defaults(run=list_users)

    rm = sub.add_parser("remove", help="remove a user")
    rm.add_argument("data_dir", type=Path)
    rm.add_argument("name")
    rm.set_defaults(run=remove_user)

    pw = sub.add_parser("passwd", help="set a user's password")
    pw.add_argument("data_dir", type=Path)
    pw.add_argument("name")
    pw.add_argument("--password", help="the new password (asked for when left out)")
    pw.set_defaults(run=set_password)


def _open(data_dir: Path) -> Database:
    return Database.open(data_dir / DB_FILE)


def _password(given: str | None) -> str:
    if given is not None:
        if not given:
            raise ValueError("--password must not be empty; nothing was changed")
        return given
    try:
        first = getpass.getpass("Password: ")
        again = getpass.getpass("Again: ")
    except EOFError:
        raise ValueError("no password given: pass --password, or run on a terminal to be asked") from None
    if first != again:
        raise ValueError("the passwords differ; nothing was changed")
    if not first:
        raise ValueError("a password must not be empty; nothing was changed")
    return first


def add_user(args: argparse.Namespace) -> int:
    role = Role.parse(args.role)
    password = _password(args.password)
    db = _open(args.data_dir)
    try:
        with db.write() as tx:
            users.add(tx, args.name, role, password, args.fullname)
    finally:
        db.close()
    print(f"added user {args.name} with role {role.wire}")
    return 0


def list_users(args: argparse.Namespace) -> int:
    db = _open(args.data_dir)
    try:
        with db.read() as tx:
            rows = sorted((r["short_name"], r["role"], r["fullname"]) for r in tx.get_records("user").values())
    finally:
        db.close()
    width = max([len(n) for n, _, _ in rows] + [4])
    print(f"{'NAME':<{width}}  {'ROLE':<14}  FULL NAME")
    for name, role, fullname in rows:
        print(f"{name:<{width}}  {role:<14}  {fullname}")
    return 0


def remove_user(args: argparse.Namespace) -> int:
    if args.name == "root":
        raise ValueError("root cannot be removed: it is the pool's own administrator")
    db = _open(args.data_dir)
    try:
        with db.write() as tx:
            if users.find(tx, args.name) is None:
                raise ValueError(f"there is no user {args.name!r}; 'farside user list' shows them")
            users.remove(tx, args.name)
    finally:
        db.close()
    print(f"removed user {args.name}")
    return 0


def set_password(args: argparse.Namespace) -> int:
    password = _password(args.password)
    db = _open(args.data_dir)
    try:
        with db.write() as tx:
            if users.find(tx, args.name) is None:
                raise ValueError(f"there is no user {args.name!r}; 'farside user list' shows them")
            users.set_password(tx, args.name, password)
    finally:
        db.close()
    print(f"password of {args.name} changed")
    return 0

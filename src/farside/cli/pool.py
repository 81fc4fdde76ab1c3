"""``farside init`` and ``farside server``: make a pool, run its server; ``farside pool dr-key``: pair it
with a DR site."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from farside.cli.connection import PasswordFile, PasswordFileError, PasswordFileProblem, read_password_file
from farside.cli.tls import make_self_signed
from farside.config import (
    DEFAULT_LISTEN,
    Listen,
    ServerConfig,
    event_history_from_env,
    fencing_from_env,
    http_limits_from_env,
    kvm_from_env,
    login_limits_from_env,
    mirror_dir_from_env,
    schedules_from_env,
    session_timeout_from_env,
    watchdog_from_env,
)
from farside.db import Database
from farside.db.bootstrap import create_pool
from farside.dr.session import source_hosts
from farside.errors import InvalidValue
from farside.hypervisor import host
from farside.replication import authenticity
from farside.server import serve
from farside.storage.roots import check_roots


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("init", help="create a pool in a new data directory")
    p.add_argument("data_dir", type=Path, help="directory for the pool database and TLS files (must be empty)")
    p.add_argument("--pool-name", required=True, help="the pool's name_label, e.g. 'Site A'")
    password = p.add_mutually_exclusive_group(required=True)
    password.add_argument("--admin-password", help="password of the pool-admin user 'root'")
    password.add_argument(
        "--admin-password-file",
        type=Path,
        help="a file holding root's password alone on a line (kept out of the command line, which ps shows)",
    )
    p.add_argument("--address", default="127.0.0.1", help="address clients use for this host")
    p.add_argument(
        "--lun-root",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory under which this pool's LUNs (SRs) may live; repeat for several "
        "(later: pool.set_lun_roots as pool-admin)",
    )
    p.add_argument(
        "--allow-source",
        action="append",
        default=[],
        metavar="HOST",
        help="a source pool's host that DR runs' source_url may name; repeat for several "
        "(later: pool.set_allowed_source_hosts as pool-admin)",
    )
    p.set_defaults(run=init)

    s = commands.add_parser("server", help="run a pool's XenAPI server")
    s.add_argument("data_dir", type=Path, help="the pool's data directory, made by 'farside init'")
    s.add_argument("--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT to serve on (default {DEFAULT_LISTEN})")
    s.add_argument("--tls", action="store_true", help="serve HTTPS with the pool's certificate")
    s.add_argument("--tls-cert", type=Path, help="PEM certificate to use instead of the pool's own")
    s.add_argument("--tls-key", type=Path, help="PEM key to use with --tls-cert")
    s.add_argument(
        "--session-timeout",
        type=float,
        default=None,
        help="seconds an idle session stays valid (default 86400)",
    )
    s.add_argument(
        "--kvm", action="store_true", help="use KVM where the CPU has vmx/svm (default: TCG, which is faster here)"
    )
    s.set_defaults(run=server)

    group = commands.add_parser("pool", help="pool settings kept in the data directory")
    pool_sub = group.add_subparsers(dest="pool_command", required=True, metavar="COMMAND")
    key = pool_sub.add_parser("dr-key", help="pair a pool with a DR site: the key its metadata is authenticated with")
    key_sub = key.add_subparsers(dest="dr_key_command", required=True, metavar="COMMAND")
    export = key_sub.add_parser("export", help="write this pool's DR key to a file, for the DR site")
    export.add_argument("data_dir", type=Path, help="the pool's data directory")
    export.add_argument("--out", type=Path, required=True, help="the file to write (made readable by you alone)")
    export.set_defaults(run=export_key)
    trust = key_sub.add_parser("trust", help="trust another pool's DR key here, so its metadata can be recovered")
    trust.add_argument("data_dir", type=Path, help="this (DR) site's data directory")
    trust.add_argument("--pool-uuid", required=True, help="the uuid of the pool whose key it is")
    trust.add_argument("--key-file", type=Path, required=True, help="the file 'dr-key export' wrote at that pool")
    trust.set_defaults(run=trust_key)


_ALONE = "put root's password alone on its first line"


def init(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    if not args.pool_name.strip():
        raise ValueError("--pool-name must not be empty: it is how the pool is shown and chosen in a failover")
    password = args.admin_password
    if args.admin_password_file is not None:
        path = str(args.admin_password_file)
        try:
            given = read_password_file(path)
        except PasswordFileError as exc:
            if exc.problem is PasswordFileProblem.UNREADABLE:
                raise ValueError(f"cannot read --admin-password-file {path}: {exc.reason}") from None
            if exc.problem is PasswordFileProblem.TOO_MANY_LINES:
                raise ValueError(f"--admin-password-file {path} holds more than 2 lines: {_ALONE}") from None
            given = PasswordFile(None, "")  # EMPTY: refused below, as an empty --admin-password
        if given.user is not None:
            # farside xe and farside dr read a two-line file as user and password: refuse the doubt.
            raise ValueError(f"--admin-password-file {path} holds 2 lines: {_ALONE}")
        password = given.password
    if not password:
        raise ValueError("the admin password must not be empty: root could log in with no password")
    settings = _settings(args.lun_root, args.allow_source)
    if data_dir.exists() and not data_dir.is_dir():
        raise ValueError(f"{data_dir} is not a directory; give a new or empty directory")
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ValueError(f"{data_dir} is not empty; 'farside init' needs a new or empty directory")
    created = not data_dir.exists()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        raise ValueError(f"cannot make {data_dir}: a file is in its path; give a new or empty directory") from None
    config = ServerConfig(data_dir)
    try:
        facts = host.probe(args.address)
        db = Database.create(config.db_path)
        try:
            pool = create_pool(db, args.pool_name, facts, password)
            with db.write() as tx:
                tx.set_fields("pool", pool, settings)
                uuid = tx.get_field("pool", pool, "uuid")
        finally:
            db.close()
        make_self_signed(config.cert_path, config.key_path, facts.hostname)
        authenticity.own_key(data_dir)
    except BaseException:
        # Nothing half made: an init that failed leaves the directory as it found it.
        for child in data_dir.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        if created:
            data_dir.rmdir()
        raise
    print(f"created pool {args.pool_name!r} (uuid {uuid}) in {data_dir}")
    print(f"run it with: farside server {data_dir}")
    return 0


def _settings(lun_roots: list[str], sources: list[str]) -> dict[str, list[str]]:
    """The pool's LUN roots and allowed source hosts, checked as pool.set_* checks them."""
    try:
        roots = check_roots(lun_roots)
    except InvalidValue as exc:
        raise ValueError(f"--lun-root {exc.params[-1]}") from None
    try:
        hosts = source_hosts(sources)
    except ValueError as exc:
        raise ValueError(f"--allow-source: {exc}") from None
    return {"lun_roots": roots, "allowed_source_hosts": hosts}


def server(args: argparse.Namespace) -> int:
    if (args.tls_cert is not None and args.tls_key is None) or (args.tls_key is not None and args.tls_cert is None):
        raise ValueError("--tls-cert and --tls-key go together")
    timeout = args.session_timeout if args.session_timeout is not None else session_timeout_from_env()
    if timeout <= 0:
        raise ValueError("--session-timeout must be positive")
    config = ServerConfig(
        data_dir=args.data_dir,
        listen=Listen.parse(args.listen),
        tls=args.tls or args.tls_cert is not None,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        session_timeout_s=timeout,
        kvm=args.kvm or kvm_from_env(),
        fencing=fencing_from_env(),
        watchdog=watchdog_from_env(),
        http=http_limits_from_env(),
        login_limits=login_limits_from_env(),
        mirror_dir=mirror_dir_from_env(),
        vmss=schedules_from_env(),
        event_history=event_history_from_env(),
    )
    serve(config)
    return 0


def pool_uuid(data_dir: Path) -> str:
    """The uuid of the pool in ``data_dir``; ValueError (a message) when there is none."""
    path = ServerConfig(data_dir).db_path
    if not path.is_file():
        raise ValueError(f"{data_dir} holds no pool ({path} is missing): give a data directory made by 'farside init'")
    db = Database.open(path)
    try:
        with db.read() as tx:
            return str(tx.get_field("pool", tx.refs("pool")[0], "uuid"))
    finally:
        db.close()


def export_key(args: argparse.Namespace) -> int:
    uuid = pool_uuid(args.data_dir)
    authenticity.write_private(args.out, authenticity.format_key(authenticity.own_key(args.data_dir)))
    print(f"wrote the DR key of pool {uuid} to {args.out}; keep it secret, and at the DR site run:")
    print(f"  farside pool dr-key trust DR_DATA_DIR --pool-uuid {uuid} --key-file {args.out}")
    return 0


def trust_key(args: argparse.Namespace) -> int:
    if args.pool_uuid == pool_uuid(args.data_dir):
        raise ValueError(f"{args.pool_uuid} is this pool's own uuid: trust the key of the other site's pool")
    try:
        text = args.key_file.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read --key-file {args.key_file}: {exc.strerror}") from None
    path = authenticity.trust(args.data_dir, args.pool_uuid, authenticity.parse_key(text, str(args.key_file)))
    print(f"trusting pool {args.pool_uuid}'s DR key ({path}); a running server uses it at the next SR plug or scan")
    return 0

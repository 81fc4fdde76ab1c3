"""``farside init`` and ``farside server``: make a pool, run its server."""

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
    http_limits_from_env,
    kvm_from_env,
    login_limits_from_env,
    session_timeout_from_env,
)
from farside.db import Database
from farside.db.bootstrap import create_pool
from farside.hypervisor import host
from farside.server import serve


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
            with db.read() as tx:
                uuid = tx.get_field("pool", pool, "uuid")
        finally:
            db.close()
        make_self_signed(config.cert_path, config.key_path, facts.hostname)
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
        http=http_limits_from_env(),
        login_limits=login_limits_from_env(),
    )
    serve(config)
    return 0

"""Pool servers run as real processes on loopback ports, for every suite that needs one."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import XenAPI

from farside.cli.lab import processes
from farside.db import Database, users
from farside.db.bootstrap import create_pool
from farside.hypervisor import host
from farside.model.roles import Role
from farside.replication import authenticity
from farside.storage import watchdog

ADMIN_PASSWORD = "secret"
_MIB16 = str(16 << 20)
# The smallest VM record xapi's checks accept: 16 MiB, one vCPU (ints as XML-RPC strings).
MINIMAL_VM = {
    "name_label": "vm",
    "memory_static_max": _MIB16,
    "memory_dynamic_max": _MIB16,
    "memory_dynamic_min": _MIB16,
    "memory_static_min": _MIB16,
    "VCPUs_max": "1",
    "VCPUs_at_startup": "1",
}


def kill_qemus(run_dir: Path) -> list[int]:
    """SIGKILL every live QEMU whose pid file is under ``run_dir``; returns the pids killed."""
    return processes.kill_qemus(run_dir)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# The LUN roots every pool made by make_pool gets: pytest's base temporary directory (set by
# conftest.py at the session's start), so that a test's LUNs in its tmp_path are usable. Its DR
# runs may name source pools on 127.0.0.1 (every test server's address).
LUN_ROOTS: list[str] = []


def make_pool(data_dir: Path, name: str = "Site A", lun_roots: list[str] | None = None) -> None:
    """What ``farside init`` does, in process (the CLI itself is tested on its own).

    LUN roots: ``lun_roots``, else the tests' (``LUN_ROOTS``, set by conftest.py), else, outside
    pytest (the benchmarks), the directory holding ``data_dir``, where they put their LUNs."""
    from farside.cli.tls import make_self_signed

    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database.create(data_dir / "pool.db")
    try:
        pool = create_pool(db, name, host.probe(), ADMIN_PASSWORD)
        with db.write() as tx:
            roots = lun_roots if lun_roots is not None else LUN_ROOTS or [str(data_dir.resolve().parent)]
            tx.set_fields("pool", pool, {"lun_roots": roots, "allowed_source_hosts": ["127.0.0.1"]})
    finally:
        db.close()
    make_self_signed(data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem", "localhost")
    authenticity.own_key(data_dir)


def pool_uuid(data_dir: Path) -> str:
    db = Database.open(data_dir / "pool.db")
    try:
        with db.read() as tx:
            return str(tx.get_field("pool", tx.refs("pool")[0], "uuid"))
    finally:
        db.close()


def pair(a: Path, b: Path) -> None:
    """Each pool trusts the other's DR key, as 'farside pool dr-key export/trust' does (tested on its own)."""
    for source, site in ((a, b), (b, a)):
        authenticity.trust(site, pool_uuid(source), authenticity.own_key(source))


@dataclass
class PoolServer:
    """A ``farside server`` process serving one pool."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    tls: bool = False
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # added to the environment (FARSIDE_* settings)
    nofile: int | None = None  # the server's RLIMIT_NOFILE, when a test needs it low
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> PoolServer:
        args = [sys.executable, "-m", "farside.cli.main", "server", str(self.data_dir)]
        args += ["--listen", f"127.0.0.1:{self.port}", *self.extra_args]
        if self.tls:
            args.append("--tls")
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - the child owns it
        limit = self.nofile
        self.process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **self.env},
            preexec_fn=None if limit is None else lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)),
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {(self.data_dir / 'server.log').read_text()}")
            try:
                httpx.get(self.url + "/", verify=False, timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not start in 20 s")

    def stop(self, keep_vms: bool = False) -> None:
        """Stop the server; unless ``keep_vms``, also end every QEMU it started (by pid file)."""
        self._stop_server()
        if not keep_vms:
            kill_qemus(self.data_dir / "run")
            # Its fencing watchdog, which would stop by itself a moment later (nothing left to fence).
            processes.stop(self.data_dir / "run" / watchdog.LOCK_FILE, "watchdog")
            link = self.data_dir / "run"
            if link.is_symlink():  # the short run directory a long data path needs lives in /tmp
                shutil.rmtree(link.resolve(), ignore_errors=True)
                link.unlink()

    def _stop_server(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def session(self, user: str = "root", password: str = ADMIN_PASSWORD, path: str = "") -> XenAPI.Session:
        s = XenAPI.Session(self.url + path, ignore_ssl=self.tls)
        s.xenapi.login_with_password(user, password, "1.0", "farside-tests")
        return s

    def add_user(self, name: str, role: Role, password: str = "pw") -> None:
        db = Database.open(self.data_dir / "pool.db")
        try:
            with db.write() as tx:
                users.add(tx, name, role, password)
        finally:
            db.close()

    def post(self, path: str, body: bytes | str, **kw: object) -> httpx.Response:
        return httpx.post(self.url + path, content=body, verify=False, timeout=30, **kw)  # type: ignore[arg-type]

"""LUN paths and source_url, attacked as a pool-operator would, on a real server (issue 13, point 7).

A pool-operator may create SRs, probe LUNs, make PBDs, DR tasks and DR runs: each of those once
wrote ``.farside-sr`` and ``lease.json`` wherever it was pointed (``/``, ``/etc``, ``/dev/shm``,
through a symlink or ``..``), and a run's ``source_url`` made the server connect to any address.
Now every path must be a plain path inside the pool's LUN roots, and a source_url must name a host
the pool-admin allowed and answer as a XenAPI pool server, or the call gets INVALID_VALUE with
nothing written and nothing connected to.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import XenAPI

from farside.db import Database
from farside.model.roles import Role

from pools import ADMIN_PASSWORD, PoolServer, make_pool
from vms import MIB, make_sr

pytestmark = pytest.mark.e2e

OPERATOR = "operator"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PoolServer, Path]]:
    """A pool whose only LUN root is ``luns``, with a pool-operator user, and that root."""
    base = tmp_path_factory.mktemp("site")
    root = base / "luns"
    root.mkdir()
    make_pool(base / "pool", lun_roots=[str(root)])
    srv = PoolServer(base / "pool")
    srv.add_user(OPERATOR, Role.POOL_OPERATOR)
    srv.start()
    try:
        yield srv, root
    finally:
        srv.stop()


def bad_paths(root: Path) -> dict[str, str]:
    """Each attack, by name: the path a pool-operator gives."""
    outside = root.parent / "outside"
    outside.mkdir(exist_ok=True)
    real = root / "real"
    real.mkdir(exist_ok=True)
    for link, target in ((root / "to-etc", "/etc"), (root / "alias", str(real))):
        if not link.is_symlink():
            link.symlink_to(target)
    return {
        "/": "/",
        "/etc": "/etc",
        "/dev/shm": "/dev/shm",
        "a symlink to /etc": str(root / "to-etc"),
        "root/../etc": f"{root}/../etc",
        "a directory outside the roots": str(outside),
        "a symlink to a LUN in the root": str(root / "alias"),
        "relative": "luns/real",
    }


def refused(call: object, root: Path) -> list[str]:
    """The failure of ``call()``, which must be INVALID_VALUE naming the roots."""
    with pytest.raises(XenAPI.Failure) as info:
        call()  # type: ignore[operator]
    details = [str(d) for d in info.value.details]
    assert details[:2] == ["INVALID_VALUE", "path"], details
    assert str(root) in details[2], details
    return details


def untouched() -> list[bool]:
    return [Path(d, ".farside-sr").exists() for d in ("/", "/etc", "/dev/shm")]


def sr_paths(s: XenAPI.Session) -> set[str]:
    return {str(r["device_config"].get("path")) for r in s.xenapi.PBD.get_all_records().values()}


def test_every_entry_point_refuses_paths_outside_the_roots(site: tuple[PoolServer, Path]) -> None:
    srv, root = site
    s = srv.session(OPERATOR, "pw")
    host = s.xenapi.host.get_all()[0]
    before = (untouched(), set(s.xenapi.SR.get_all()), set(s.xenapi.PBD.get_all()), s.xenapi.DR_task.get_all())
    assert before[0] == [False, False, False]
    introduced = s.xenapi.SR.introduce("3f0c1f5e-5d1a-4b86-9a3c-6d2f5b3c2e11", "x", "", "file", "user", True, {})
    try:
        for name, path in bad_paths(root).items():
            config = {"path": path}
            refused(lambda c=config, n=name: s.xenapi.SR.create(host, c, "0", n, "", "file", "user", True, {}), root)
            refused(lambda c=config: s.xenapi.SR.probe(host, c, "file", {}), root)
            refused(lambda c=config: s.xenapi.PBD.create({"host": host, "SR": introduced, "device_config": c}), root)
            refused(lambda c=config: s.xenapi.DR_task.create("file", c, []), root)
            refused(lambda p=path: s.xenapi.DR_run.create("test", {"luns": p, "power": "none"}), root)
        assert untouched() == [False, False, False]
        assert set(s.xenapi.SR.get_all()) == before[1] | {introduced}
        assert set(s.xenapi.PBD.get_all()) == before[2]
        assert s.xenapi.DR_task.get_all() == before[3]
        assert not list((root / "real").iterdir()), "nothing was written into the LUN behind the symlink"
    finally:
        s.xenapi.SR.forget(introduced)
    # What is inside the roots still works.
    sr = make_sr(s, root / "lun")
    assert s.xenapi.SR.get_name_label(sr) == "LUN"


def test_a_lun_replaced_by_a_symlink_is_not_plugged(site: tuple[PoolServer, Path]) -> None:
    srv, root = site
    s = srv.session(OPERATOR, "pw")
    sr = make_sr(s, root / "swapped")
    pbd = s.xenapi.SR.get_PBDs(sr)[0]
    s.xenapi.PBD.unplug(pbd)
    (root / "swapped").rename(root / "moved")
    (root / "swapped").symlink_to(root / "moved")
    refused(lambda: s.xenapi.PBD.plug(pbd), root)
    assert not s.xenapi.PBD.get_currently_attached(pbd)


def test_the_probe_does_not_follow_a_symlinked_entry(site: tuple[PoolServer, Path]) -> None:
    """A directory of LUNs that holds a link to an SR outside the roots lists only its own LUNs."""
    srv, root = site
    s = srv.session(OPERATOR, "pw")
    host = s.xenapi.host.get_all()[0]
    make_sr(s, root / "many" / "inside")
    elsewhere = root.parent / "elsewhere"
    shutil.copytree(root / "many" / "inside", elsewhere)  # an SR, outside the roots
    (root / "many" / "link").symlink_to(elsewhere)
    probe = s.xenapi.SR.probe(host, {"path": str(root / "many")}, "file", {})
    assert f"<path>{root / 'many' / 'inside'}</path>" in probe
    assert "link" not in probe and str(elsewhere) not in probe


def test_an_image_replaced_by_a_symlink_is_never_read(site: tuple[PoolServer, Path]) -> None:
    """A VDI whose image file became a link to a host file: the export refuses, no host bytes leave."""
    srv, root = site
    s = srv.session()
    sr = make_sr(s, root / "images")
    disk = {"SR": sr, "virtual_size": str(MIB), "type": "user", "name_label": "d", "sharable": False,
            "read_only": False, "other_config": {}, "sm_config": {"type": "raw"}}  # fmt: skip
    vdi = s.xenapi.VDI.create(disk)
    image = root / "images" / s.xenapi.VDI.get_location(vdi)
    image.unlink()
    image.symlink_to("/etc/passwd")
    query = {"session_id": s.handle, "vdi": vdi, "format": "raw"}
    answer = httpx.get(srv.url + "/export_raw_vdi", params=query, timeout=30)
    assert answer.status_code >= 400
    assert b"root:" not in answer.content
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.VDI.clone(vdi, {})
    assert info.value.details[0].startswith("SR_BACKEND_FAILURE")


def test_only_pool_admin_sets_the_roots_and_only_to_real_directories(site: tuple[PoolServer, Path]) -> None:
    srv, root = site
    op = srv.session(OPERATOR, "pw")
    pool = op.xenapi.pool.get_all()[0]
    for call in (
        lambda: op.xenapi.pool.set_lun_roots(pool, ["/"]),
        lambda: op.xenapi.pool.add_lun_roots(pool, "/etc"),
        lambda: op.xenapi.pool.set_allowed_source_hosts(pool, ["10.0.0.1"]),
    ):
        with pytest.raises(XenAPI.Failure) as info:
            call()
        assert info.value.details[0] == "RBAC_PERMISSION_DENIED"
    s = srv.session()
    for bad in ("/", "/etc", "/dev/shm", str(root / "to-etc"), f"{root}/../luns", str(root / "missing")):
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.pool.add_lun_roots(pool, bad)
        assert info.value.details[:2] == ["INVALID_VALUE", "lun_roots"], bad
    more = root.parent / "more"
    more.mkdir()
    s.xenapi.pool.add_lun_roots(pool, str(more))
    try:
        assert s.xenapi.pool.get_lun_roots(pool) == [str(root), str(more)]
        make_sr(op, more / "lun")
    finally:
        s.xenapi.pool.set_lun_roots(pool, [str(root)])
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.pool.add_allowed_source_hosts(pool, "http://site-a:8440")
    assert info.value.details[:2] == ["INVALID_VALUE", "allowed_source_hosts"]


def test_init_sets_the_roots_and_allowed_sources(tmp_path: Path) -> None:
    def init(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "farside.cli.main", "init", *args, "--pool-name", "P", "--admin-password", "pw"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    for bad in ("/etc", "/dev/shm", "/", str(tmp_path / "missing")):
        result = init(str(tmp_path / "refused"), "--lun-root", bad)
        assert result.returncode != 0 and "--lun-root" in result.stderr and "Traceback" not in result.stderr, bad
        assert not (tmp_path / "refused").exists()
    result = init(str(tmp_path / "refused"), "--lun-root", str(tmp_path), "--allow-source", "http://x/")
    assert result.returncode != 0 and "--allow-source" in result.stderr
    luns = tmp_path / "luns"
    luns.mkdir()
    result = init(str(tmp_path / "pool"), "--lun-root", str(luns), "--allow-source", "Site-A.example",
                  "--allow-source", "[::1]")  # fmt: skip
    assert result.returncode == 0, result.stderr
    db = Database.open(tmp_path / "pool" / "pool.db")
    try:
        with db.read() as tx:
            pool = tx.refs("pool")[0]
            assert tx.get_field("pool", pool, "lun_roots") == [str(luns)]
            assert tx.get_field("pool", pool, "allowed_source_hosts") == ["site-a.example", "::1"]
    finally:
        db.close()


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A web server that is not a pool server: answers 200 to anything, and keeps what it was sent."""

    bodies: list[bytes] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers.get("content-length", 0))))
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>hello</html>")

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_source_url_must_be_an_allowed_pool_server(site: tuple[PoolServer, Path], tmp_path: Path) -> None:
    srv, root = site
    s = srv.session(OPERATOR, "pw")
    luns = str(root / "dr")

    def create(url: str) -> str:
        return str(s.xenapi.DR_run.create("test", {"luns": luns, "power": "none", "source_url": url}))

    def rejected(url: str) -> str:
        with pytest.raises(XenAPI.Failure) as info:
            create(url)
        assert info.value.details[0] == "INVALID_VALUE", info.value.details
        return str(info.value.details[-1])

    # A host the pool-admin did not allow is never contacted: a listener there sees no connection.
    with socket.socket() as trap:
        trap.bind(("127.0.0.2", 0))
        trap.listen(8)
        trap.setblocking(False)
        why = rejected(f"http://127.0.0.2:{trap.getsockname()[1]}/")
        assert "allowed_source_hosts: 127.0.0.1" in why and "--allow-source" in why
        with pytest.raises(BlockingIOError):
            trap.accept()
    for url in ("file:///etc/passwd", "http://root:secret@127.0.0.1:1/", "gopher://127.0.0.1/", "http://[::1"):
        rejected(url)
    # An allowed host where nothing answers is the source site down: the run may name it.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    s.xenapi.DR_run.destroy(create(f"http://127.0.0.1:{port}/"))
    # Where something else answers on an allowed host, the run is refused.
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=web.serve_forever, daemon=True)
    thread.start()
    try:
        assert "not a XenAPI pool server" in rejected(f"http://127.0.0.1:{web.server_address[1]}/")
    finally:
        web.shutdown()
        web.server_close()
        thread.join(5)
    assert len(_Recorder.bodies) == 1 and b"pool.get_all_records" in _Recorder.bodies[0]
    assert ADMIN_PASSWORD.encode() not in _Recorder.bodies[0] and b"pw" not in _Recorder.bodies[0]
    # A real pool server on an allowed host is accepted, over HTTP and HTTPS.
    make_pool(tmp_path / "source", "Source")
    source = PoolServer(tmp_path / "source", tls=True).start()
    try:
        run = create(source.url)
        assert s.xenapi.DR_run.get_options(run)["source_url"] == source.url
        s.xenapi.DR_run.destroy(run)
    finally:
        source.stop()


def test_a_mirror_never_targets_a_system_directory_or_one_outside_the_pools_roots(tmp_path: Path) -> None:
    luns = tmp_path / "luns"
    source = tmp_path / "source"
    for d in (luns, source, tmp_path / "outside"):
        d.mkdir()
    (tmp_path / "link").symlink_to("/etc")
    make_pool(tmp_path / "pool", lun_roots=[str(luns)])

    def create(target: str, *extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "farside.cli.main", "mirror", "create", "m", "--state-dir", str(tmp_path / "m"),
                "--source", str(source), "--target", target, *extra]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    for target in ("/etc/farside", "/dev/shm/lun", "/", str(tmp_path / "link" / "lun"), f"{luns}/../../etc"):
        result = create(target)
        assert result.returncode != 0 and "--target" in result.stderr and "Traceback" not in result.stderr, target
    pool = ("--target-pool", str(tmp_path / "pool"))
    result = create(str(tmp_path / "outside" / "lun"), *pool)
    assert result.returncode != 0 and f"the pool's LUN roots are {luns}" in result.stderr
    assert not (tmp_path / "outside" / "lun").exists() and not Path("/etc/farside").exists()
    result = create(str(luns / "lun"), *pool)
    assert result.returncode == 0, result.stderr
    assert (luns / "lun").is_dir()


def test_farside_dr_refuses_luns_outside_the_roots(site: tuple[PoolServer, Path]) -> None:
    srv, root = site
    env = {**os.environ, "FARSIDE_PASSWORD": ADMIN_PASSWORD}
    for flag, path in (("--lun-dir", "/etc"), ("--lun", str(root / "to-etc")), ("--lun-dir", "/dev/shm")):
        argv = [sys.executable, "-m", "farside.cli.main", "dr", "test", "--server", srv.url, flag, path, "--all"]
        result = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
        assert f"the pool's LUN roots are {root}" in result.stderr, result.stderr
    assert srv.session().xenapi.DR_run.get_all() == []
    assert not Path("/etc/.farside-sr").exists()

#!/usr/bin/env python3
"""Benchmark of XVA export and import (``GET /export``, ``PUT /import``) against ``tar``.

The issue's benchmark: a VM with a 2 GiB raw disk, half of it written (random data in every other
1 MiB chunk), half holes. Timed, each writing a new file in the same directory:

- export: a client streaming ``GET /export`` into a file, against ``tar --sparse -cf`` of the
  disk's image file;
- import: ``PUT /import`` of that XVA from the file (a new VM and VDI on the SR), against
  ``tar -xf`` of tar's archive into an empty directory;
- compressed: ``GET /export?use_compression=zstd`` against ``tar --sparse -cf - | zstd -1``, and
  the import of that XVA against ``zstd -d | tar -x``.

Throughput is the disk's size over the time. Targets: each XVA step at least 0.8x the throughput
of its tar anchor. Before every timed step: ``sync`` (no step pays for another's writeback) and the
source read once (warm page cache). Each step runs ``--runs`` times (default 3); the best time of
each counts, since the machine is shared. The imported VMs are destroyed between runs.

Usage: ``.venv/bin/python bench/xva.py [--quick] [--runs N]`` (``--quick``: 256 MiB instead of
2 GiB). Everything lives in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import XenAPI

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pools import MINIMAL_VM, PoolServer, make_pool

MIB = 1 << 20
TARGET = 0.8
BLOCK = MIB


def _fill(path: Path, size: int) -> None:
    """Random data in every other 1 MiB chunk, holes between."""
    with open(path, "r+b") as fh:
        for offset in range(0, size, 2 * MIB):
            fh.seek(offset)
            fh.write(os.urandom(MIB))
        fh.flush()
        os.fsync(fh.fileno())


def _warm(path: Path) -> None:
    with open(path, "rb") as fh:
        while fh.read(8 * MIB):
            pass


def _settle(source: Path) -> None:
    subprocess.run(["sync"], check=True)
    _warm(source)


def _timed(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _connection(url: str) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, blocksize=BLOCK)


def _download(url: str, path: str, out: Path) -> None:
    connection = _connection(url)
    connection.request("GET", path)
    response = connection.getresponse()
    assert response.status == 200, response.read()[:300]
    with open(out, "wb") as fh:
        while block := response.read(BLOCK):
            fh.write(block)
    connection.close()


def _upload(url: str, path: str, source: Path) -> str:
    connection = _connection(url)
    with open(source, "rb") as fh:
        headers = {"Content-Length": str(source.stat().st_size)}
        connection.request("PUT", path, body=fh, headers=headers)
        response = connection.getresponse()
        text = response.read().decode()
    connection.close()
    assert response.status == 200, text
    return text.strip()


def _drop(s: XenAPI.Session, vm: str) -> None:
    x = s.xenapi
    for vbd in x.VM.get_VBDs(vm):
        vdi = x.VBD.get_VDI(vbd)
        x.VBD.destroy(vbd)
        x.VDI.destroy(vdi)
    x.VM.destroy(vm)


def _best(runs: int, prepare: Callable[[], None], step: Callable[[], None], after: Callable[[], None]) -> float:
    times = []
    for _ in range(runs):
        prepare()
        times.append(_timed(step))
        after()
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 MiB instead of 2 GiB")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = (256 if args.quick else 2048) * MIB
    root = Path(tempfile.mkdtemp(prefix="farside-bench-xva-"))
    server: PoolServer | None = None
    try:
        make_pool(root / "pool", "Bench", lun_roots=[str(root)])
        server = PoolServer(root / "pool").start()
        s = server.session()
        x = s.xenapi
        lun = root / "lun"
        lun.mkdir()
        host = x.host.get_all()[0]
        sr = x.SR.create(host, {"path": str(lun)}, "0", "bench", "", "file", "user", True, {})
        vdi = x.VDI.create(
            {"SR": sr, "virtual_size": str(size), "type": "user", "name_label": "disk", "sharable": False,
             "read_only": False, "other_config": {}, "sm_config": {"type": "raw"}}
        )  # fmt: skip
        image = lun / x.VDI.get_location(vdi)
        _fill(image, size)  # the halted VM's disk, written in place before anything reads it
        vm = x.VM.create({**MINIMAL_VM, "name_label": "bench"})
        x.VBD.create(
            {"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW", "type": "Disk", "empty": False,
             "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}
        )  # fmt: skip
        uuid = x.VM.get_uuid(vm)
        work = root / "work"
        work.mkdir()
        url = server.url
        session = s.handle
        results: list[tuple[str, float, float]] = []

        def clean(*paths: Path) -> Callable[[], None]:
            def run() -> None:
                for p in paths:
                    if p.is_dir():
                        shutil.rmtree(p)
                    else:
                        p.unlink(missing_ok=True)

            return run

        tar_out, xva_out = work / "disk.tar", work / "disk.xva"
        tar_zst, xva_zst = work / "disk.tar.zst", work / "disk.zst.xva"
        cwd = str(lun)
        name = image.name

        def tar_create() -> None:
            subprocess.run(["tar", "--sparse", "-cf", str(tar_out), name], cwd=cwd, check=True)

        def tar_create_zstd() -> None:
            with open(tar_zst, "wb") as out:
                tar = subprocess.Popen(["tar", "--sparse", "-cf", "-", name], cwd=cwd, stdout=subprocess.PIPE)
                subprocess.run(["zstd", "-1", "-q", "-c"], stdin=tar.stdout, stdout=out, check=True)
                assert tar.wait() == 0

        export_path = f"/export?{urllib.parse.urlencode({'session_id': session, 'uuid': uuid})}"
        settle = lambda: _settle(image)  # noqa: E731
        nothing = lambda: None  # noqa: E731
        zst_path = export_path + "&use_compression=zstd"
        for label, anchor_step, path, out in (("export", tar_create, export_path, xva_out),
                                              ("export zstd", tar_create_zstd, zst_path, xva_zst)):  # fmt: skip
            anchor = _best(args.runs, settle, anchor_step, nothing)
            ours = _best(args.runs, settle, lambda p=path, o=out: _download(url, p, o), nothing)  # type: ignore[misc]
            results.append((label, anchor, ours))
        extract = work / "x"
        import_path = f"/import?{urllib.parse.urlencode({'session_id': session, 'sr_id': sr})}"
        imported: list[str] = []

        def xva_import(source: Path) -> Callable[[], None]:
            return lambda: imported.append(_upload(url, import_path, source))

        def drop_imported() -> None:
            while imported:
                _drop(s, imported.pop())

        def tar_extract(archive: Path, zstd: bool) -> Callable[[], None]:
            def run() -> None:
                extract.mkdir()
                if zstd:
                    z = subprocess.Popen(["zstd", "-d", "-q", "-c", str(archive)], stdout=subprocess.PIPE)
                    subprocess.run(["tar", "-xf", "-"], cwd=extract, stdin=z.stdout, check=True)
                    assert z.wait() == 0
                else:
                    subprocess.run(["tar", "-xf", str(archive)], cwd=extract, check=True)

            return run

        for label, tar_archive, xva, zstd in (("import", tar_out, xva_out, False),
                                              ("import zstd", tar_zst, xva_zst, True)):  # fmt: skip
            warm = lambda a=tar_archive: _settle(a)  # noqa: E731
            anchor = _best(args.runs, warm, tar_extract(tar_archive, zstd), clean(extract))
            warm_xva = lambda a=xva: _settle(a)  # noqa: E731
            ours = _best(args.runs, warm_xva, xva_import(xva), drop_imported)
            results.append((label, anchor, ours))
        print(f"XVA benchmark: a {size // MIB} MiB raw disk, half written, half holes; best of {args.runs} runs")
        sizes = ", ".join(f"{p.name} {p.stat().st_size // MIB} MiB" for p in (tar_out, xva_out, tar_zst, xva_zst))
        print(f"  sizes: {sizes}")
        ok = True
        for label, anchor, ours in results:
            ratio = anchor / ours
            verdict = "PASS" if ratio >= TARGET else "MISS"
            ok = ok and ratio >= TARGET
            base = "tar|zstd -1" if "zstd" in label else "tar"
            print(f"  {label:<12} XVA {size / MIB / ours:7.0f} MiB/s  {base:<12} {size / MIB / anchor:7.0f} MiB/s  "
                  f"ratio {ratio:4.2f}x (target >= {TARGET}x) [{verdict}]")  # fmt: skip
        return 0 if ok else 1
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

"""VM export and import in XVA between two real pools: xapi's format (checked by tests/xva_format.py,
a reader of its own), compression, restore, boot, hostile streams, roles and tasks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import XenAPI

import xva_format as xf
from farside.model.roles import Role

from pools import ADMIN_PASSWORD, PoolServer, make_pool
from vms import MIB, bootable_vm, make_sr, wait_serial, wait_state, wait_task


@dataclass
class Site:
    server: PoolServer
    s: XenAPI.Session
    sr: str
    lun: Path

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(f"{self.server.url}{path}", params={"session_id": self.s.handle, **params}, timeout=120)

    def put(self, path: str, body: bytes, **params: str) -> httpx.Response:
        url = f"{self.server.url}{path}"
        return httpx.put(url, params={"session_id": self.s.handle, **params}, content=body, timeout=120)

    def import_xva(self, body: bytes, **params: str) -> httpx.Response:
        return self.put("/import", body, sr_id=self.sr, **params)

    def state(self) -> tuple[set[str], set[str], set[str]]:
        """VM and VDI uuids, and the LUN's files and records: what an import may leave behind."""
        x = self.s.xenapi
        vms = {r["uuid"] for r in x.VM.get_all_records().values()}
        vdis = {r["uuid"] for r in x.VDI.get_all_records().values()}
        files = {str(p.relative_to(self.lun)) for p in self.lun.rglob("*") if "lease" not in p.name}
        return vms, vdis, files


@dataclass
class Sites:
    a: Site
    b: Site
    vm: str
    data_vdi: str
    data: bytes  # the data disk's first 3 MiB as written


def _site(base: Path, name: str) -> Site:
    make_pool(base / name, f"Site {name}")
    server = PoolServer(base / name).start()
    s = server.session()
    return Site(server, s, make_sr(s, base / f"lun-{name}"), base / f"lun-{name}")


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sites]:
    base = tmp_path_factory.mktemp("xva")
    a, b = _site(base, "a"), _site(base, "b")
    try:
        vm = bootable_vm(a.server, a.s, a.sr, "XVATAG")
        data_vdi = a.s.xenapi.VDI.create(
            {"SR": a.sr, "virtual_size": str(6 * MIB), "type": "user", "name_label": "data", "sharable": False,
             "read_only": False, "other_config": {}, "sm_config": {}}
        )  # fmt: skip
        # Chunk 0 and 2 hold data, chunk 1 is zeros; chunks 3-5 were never written.
        data = b"A" * MIB + bytes(MIB) + b"C" * (MIB // 2) + bytes(MIB // 2)
        assert a.put("/import_raw_vdi", data, vdi=data_vdi, format="raw").status_code == 200
        a.s.xenapi.VBD.create(
            {"VM": vm, "VDI": data_vdi, "userdevice": "1", "bootable": False, "mode": "RW", "type": "Disk",
             "empty": False, "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}
        )  # fmt: skip
        yield Sites(a, b, vm, data_vdi, data)
    finally:
        a.server.stop()
        b.server.stop()


def _export(site: Site, vm: str, **params: str) -> bytes:
    response = site.get("/export", uuid=site.s.xenapi.VM.get_uuid(vm), **params)
    assert response.status_code == 200, response.text
    return response.content


def test_export_is_xapis_format(sites: Sites) -> None:
    """ova.xml first (one line, no prolog, xapi's version struct and object list), then each disk as
    1 MiB chunks with XXH64 members, zero chunks skipped but the first and last kept, two zero
    blocks at the end; the task named in Task-ID ends in success."""
    a = sites.a
    response = a.get("/export", uuid=a.s.xenapi.VM.get_uuid(sites.vm))
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == 'attachment; filename="export.xva"'
    parsed = xf.parse(response.content)
    assert not parsed.ova_raw.startswith(b"<?xml") and b"\n" not in parsed.ova_raw
    version = parsed.ova["version"]
    assert version["export_vsn"] == "2" and version["xapi_major"].isdigit()
    ids = {o["id"] for o in parsed.ova["objects"]}
    assert all(i.startswith("Ref:") for i in ids)
    (vm,) = parsed.objects("VM")
    snap = vm["snapshot"]
    assert snap["power_state"] == "Halted" and snap["current_operations"] == {} and snap["allowed_operations"] == []
    assert snap["memory_static_max"] == str(16 * MIB)  # ints as bare strings, as xapi writes them
    assert snap["resident_on"] == "OpaqueRef:NULL"
    assert set(snap["VBDs"]) <= ids and set(snap["VIFs"]) <= ids
    assert {o["class"] for o in parsed.ova["objects"]} == {"VM", "VBD", "VIF", "network", "VDI", "SR"}
    vdis = {o["snapshot"]["uuid"]: o["id"] for o in parsed.objects("VDI")}
    data_id = vdis[a.s.xenapi.VDI.get_uuid(sites.data_vdi)]
    assert sorted(parsed.chunks) == sorted(vdis.values())
    assert list(parsed.chunks[data_id]) == [0, 2, 5]  # chunk 1 is zeros, 3-4 holes; 5 is the last
    assert [n for n, _ in parsed.members if n.startswith(data_id)] == [
        f"{data_id}/{c:08d}{ext}" for c in (0, 2, 5) for ext in ("", ".xxhash")
    ]
    assert xf.disk(parsed.chunks[data_id], 6 * MIB)[: len(sites.data)] == sites.data
    assert parsed.tail[:1024] == bytes(1024)
    order = [n.split("/")[0] for n, _ in parsed.members[1:]]
    assert order == sorted(order)  # disks in lexicographic order of their ids, as xapi streams them
    task = response.headers["task-id"]
    record = a.s.xenapi.task.get_record(task)
    assert record["status"] == "success" and float(record["progress"]) == 1.0


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_compressed_exports_import(sites: Sites, compression: str) -> None:
    """gzip and zstd exports carry the same members; the import detects either by itself."""
    body = _export(sites.a, sites.vm, use_compression=compression)
    assert body[:4] == b"\x28\xb5\x2f\xfd" if compression == "zstd" else body[:2] == b"\x1f\x8b"
    parsed = xf.parse(body)
    assert len(parsed.chunks) == 2
    response = sites.b.import_xva(body)
    assert response.status_code == 200, response.text
    (vm,) = response.text.split()
    sites.b.s.xenapi.VM.destroy(vm)


def test_import_restore_boots_on_the_other_pool(sites: Sites) -> None:
    """restore=true keeps the VM's uuid and MACs; the imported VM boots and prints its tag; a second
    restore over it is refused as not newer unless forced, and a forced one raises its version."""
    a, b = sites.a, sites.b
    body = _export(a, sites.vm)
    task = b.s.xenapi.task.create("import", "")
    response = b.import_xva(body, restore="true", task_id=task)
    assert response.status_code == 200, response.text
    record = wait_task(b.s, task)
    assert record["status"] == "success" and "OpaqueRef:" in record["result"]
    (vm,) = response.text.split()
    x = b.s.xenapi
    assert x.VM.get_uuid(vm) == a.s.xenapi.VM.get_uuid(sites.vm)
    macs = sorted(x.VIF.get_MAC(v) for v in x.VM.get_VIFs(vm))
    assert macs == sorted(a.s.xenapi.VIF.get_MAC(v) for v in a.s.xenapi.VM.get_VIFs(sites.vm))
    version = int(x.VM.get_version(vm))
    disks = {x.VBD.get_userdevice(v): x.VBD.get_VDI(v) for v in x.VM.get_VBDs(vm)}
    raw = b.get("/export_raw_vdi", vdi=disks["1"], format="raw")
    assert raw.content[: len(sites.data)] == sites.data and len(raw.content) == 6 * MIB
    x.VM.start(vm, False, False)
    try:
        wait_serial(b.server, b.s, vm, b"BOOT XVATAG")
    finally:
        x.VM.hard_shutdown(vm)
    wait_state(b.s, vm, "Halted")
    again = b.import_xva(body, restore="true")
    assert again.status_code == 409 and "VM_TO_IMPORT_IS_NOT_NEWER_VERSION" in again.text
    forced = b.import_xva(body, restore="true", force="true")
    assert forced.status_code == 200, forced.text
    (replaced,) = forced.text.split()
    assert x.VM.get_uuid(replaced) == a.s.xenapi.VM.get_uuid(sites.vm)
    assert int(x.VM.get_version(replaced)) == version  # the export's version plus one, again
    guests = [r for r in x.VM.get_all_records().values() if not (r["is_control_domain"] or r["is_a_template"])]
    assert len(guests) == 1
    x.VM.destroy(replaced)


def test_plain_import_gets_new_identity(sites: Sites) -> None:
    """Without restore the VM gets a new uuid and its VIFs new MACs, in the same pool as its source;
    a dry run before makes nothing."""
    a = sites.a
    body = _export(a, sites.vm)
    before = a.state()
    dry = a.import_xva(body, dry_run="true")  # reads and checks the whole stream, makes nothing
    assert dry.status_code == 200 and dry.text == "" and a.state() == before
    response = a.import_xva(body)
    assert response.status_code == 200, response.text
    (vm,) = response.text.split()
    x = a.s.xenapi
    assert x.VM.get_uuid(vm) != x.VM.get_uuid(sites.vm)
    assert {x.VIF.get_MAC(v) for v in x.VM.get_VIFs(vm)}.isdisjoint(x.VIF.get_MAC(v) for v in x.VM.get_VIFs(sites.vm))
    for vbd in x.VM.get_VBDs(vm):
        vdi = x.VBD.get_VDI(vbd)
        x.VBD.destroy(vbd)
        x.VDI.destroy(vdi)
    x.VM.destroy(vm)


def _chunks(prefix: str, data: bytes) -> bytes:
    out = b""
    for n in range(0, len(data), MIB):
        out += xf.chunk(f"{prefix}/{n // MIB:08d}", data[n : n + MIB])
    return out


GOOD = b"X" * MIB + b"Y" * MIB


def _hostile() -> dict[str, tuple[bytes, str]]:
    h = xf.header()
    ova = xf.member("ova.xml", h)
    qcow2_header = b"QFI\xfb" + bytes(4) + b"\x00\x00\x00\x02" + bytes(MIB - 12)
    return {
        "truncated": (ova + xf.chunk("Ref:9/00000000", GOOD[:MIB])[:700], "IMPORT_ERROR_PREMATURE_EOF"),
        "no-end": (ova + xf.chunk("Ref:9/00000000", GOOD[:MIB]), "IMPORT_ERROR_PREMATURE_EOF"),
        "corrupt": (
            ova + xf.chunk("Ref:9/00000000", GOOD[:MIB], digest="0" * 16) + xf.END,
            "IMPORT_ERROR_SOME_CHECKSUMS_FAILED",
        ),
        "newer-xapi": (xf.member("ova.xml", xf.header(version=(99, 0))) + xf.END, "IMPORT_INCOMPATIBLE_VERSION"),
        "outside": (ova + xf.chunk("../../etc/00000000", GOOD[:MIB]), "IMPORT_ERROR_UNEXPECTED_FILE"),
        "dotdot": (ova + xf.chunk("Ref:9/../00000000", GOOD[:MIB]), "IMPORT_ERROR_UNEXPECTED_FILE"),
        "out-of-order": (
            xf.member("ova.xml", xf.header(disk_size=4 * MIB))
            + xf.chunk("Ref:9/00000002", GOOD[:MIB])
            + xf.chunk("Ref:9/00000001", GOOD[:MIB]),
            "IMPORT_ERROR_UNEXPECTED_FILE",
        ),
        "symlink": (ova + xf.member("Ref:9/00000000", b"", tarfile_symlink()), "IMPORT_ERROR"),
        "not-ova-first": (_chunks("Ref:9", GOOD) + ova, "IMPORT_ERROR_UNEXPECTED_FILE"),
        "huge-ova": (huge_ova_header(), "IMPORT_ERROR"),
        "entities": (xf.member("ova.xml", b'<!DOCTYPE x [<!ENTITY a "aaaa">]><value>&a;</value>'), "IMPORT_ERROR"),
        "sr-full": (xf.member("ova.xml", xf.header(physical=1 << 62, disk_size=1 << 40)) + xf.END, "SR_FULL"),
        "past-end": (ova + xf.chunk("Ref:9/00000000", GOOD + GOOD[:MIB]), "IMPORT_ERROR"),
        "not-tar": (b"hello" * 300, "IMPORT_ERROR"),
        # Values that reach QEMU's command line, checked as VBD.create, VIF.create and VM.create do.
        "mac-injection": (xf.member("ova.xml", xf.header(mac="02:11:22:33:44:55,romfile=/etc/shadow")), "IMPORT_ERROR"),
        "disk-device": (xf.member("ova.xml", xf.header(userdevice="9")), "IMPORT_ERROR"),
        "memory": (xf.member("ova.xml", xf.header(memory=1)), "MEMORY_CONSTRAINT_VIOLATION"),
        "bad-gzip": (b"\x1f\x8b\x08\x00" + b"\xff" * 600, "IMPORT_ERROR"),
        # A disk whose first chunk is a qcow2 header naming a backing file: guest data, kept as bytes.
        "qcow2-inside": (ova + _chunks("Ref:9", qcow2_header + b"/etc/shadow".ljust(MIB, b"\0")) + xf.END, ""),
    }


def tarfile_symlink() -> bytes:
    import tarfile

    return tarfile.SYMTYPE


def huge_ova_header() -> bytes:
    """ova.xml declaring 1 GiB: refused from its header, before anything is read."""
    import tarfile

    info = tarfile.TarInfo("ova.xml")
    info.size = 1 << 30
    return info.tobuf(tarfile.USTAR_FORMAT) + b"<value>" * 100


@pytest.mark.parametrize("case", sorted(_hostile()))
def test_hostile_xva_is_refused_and_leaves_nothing(sites: Sites, case: str) -> None:
    """Each hostile stream gets xapi's error, and the pool and the LUN are as they were."""
    body, code = _hostile()[case]
    b = sites.b
    before = b.state()
    # A MAC is kept only by a restore: without one the VIF gets a new MAC anyway.
    response = b.import_xva(body, restore=str(case == "mac-injection").lower())
    if not code:  # accepted: the disk holds the bytes sent, in an image of its own
        assert response.status_code == 200, response.text
        (vm,) = response.text.split()
        x = b.s.xenapi
        (vbd,) = x.VM.get_VBDs(vm)
        vdi = x.VBD.get_VDI(vbd)
        raw = b.get("/export_raw_vdi", vdi=vdi, format="raw").content
        assert raw.startswith(b"QFI\xfb") and b"/etc/shadow" in raw
        image = b.lun / x.VDI.get_location(vdi)
        assert "/etc/shadow" not in _qemu_img_info(image)
        x.VBD.destroy(vbd)
        x.VDI.destroy(vdi)
        x.VM.destroy(vm)
    else:
        assert response.status_code in (400, 409), response.text
        assert response.text.split()[0] == code, response.text
        task = response.headers.get("task-id")
        assert task is None
    assert b.state() == before


def _qemu_img_info(path: Path) -> str:
    import subprocess

    return subprocess.run(["qemu-img", "info", "-f", "qcow2", str(path)], capture_output=True, text=True).stdout


def test_failed_import_task_fails(sites: Sites) -> None:
    """The task given as task_id ends in failure with the import's error."""
    b = sites.b
    task = b.s.xenapi.task.create("import", "")
    body, code = _hostile()["corrupt"]
    assert b.import_xva(body, task_id=task).status_code == 400
    record = wait_task(b.s, task)
    assert record["status"] == "failure" and record["error_info"][0] == code
    assert "Block Ref:9/00000000 checksum failed" in record["error_info"][1]


def test_forced_corrupt_chunk_imports(sites: Sites) -> None:
    """force=true takes a chunk whose checksum is wrong, as xapi does."""
    body, _ = _hostile()["corrupt"]
    response = sites.b.import_xva(body + b"", force="true")
    assert response.status_code == 400  # the stream still lacks its second chunk
    body = xf.member("ova.xml", xf.header()) + xf.chunk("Ref:9/00000000", GOOD[:MIB], digest="0" * 16)
    body += xf.chunk("Ref:9/00000001", GOOD[MIB:]) + xf.END
    response = sites.b.import_xva(body, force="true")
    assert response.status_code == 200, response.text
    _drop_vm(sites.b, response.text.split()[0])


def _drop_vm(site: Site, vm: str) -> None:
    x = site.s.xenapi
    for vbd in x.VM.get_VBDs(vm):
        vdi = x.VBD.get_VDI(vbd)
        x.VBD.destroy(vbd)
        if vdi != "OpaqueRef:NULL":
            x.VDI.destroy(vdi)
    x.VM.destroy(vm)


def test_foreign_xva_legacy_checksums_and_counters(sites: Sites) -> None:
    """An XVA of another writer: SHA-1 ``.checksum`` members, a zero-length keep-alive member that
    puts the counters one ahead of the offsets, ids Ref:10 and Ref:9 for two disks in xapi's
    (lexicographic) order; the disks come out as written."""
    b = sites.b
    two = xf.header(vdi_id="Ref:9").replace(
        b"<value>Ref:3</value></data>", b"<value>Ref:3</value><value>Ref:11</value></data>"
    )
    extra = (
        b"<value><struct><member><name>class</name><value>VBD</value></member><member><name>id</name>"
        b"<value>Ref:11</value></member><member><name>snapshot</name><value><struct><member><name>VDI</name>"
        b"<value>Ref:10</value></member><member><name>userdevice</name><value>1</value></member>"
        b"<member><name>type</name><value>Disk</value></member></struct></value></member></struct></value>"
        b"<value><struct><member><name>class</name><value>VDI</value></member><member><name>id</name>"
        b"<value>Ref:10</value></member><member><name>snapshot</name><value><struct><member><name>virtual_size"
        b"</name><value>3145728</value></member><member><name>SR</name><value>Ref:5</value></member>"
        b"</struct></value></member></struct></value>"
    )
    head, end, _ = two.rpartition(b"</data></array></value></member></struct></value>")
    two = head + extra + end
    ten = b"T" * MIB
    body = xf.member("ova.xml", two)
    body += xf.chunk("Ref:10/00000000", ten, sha1=True)
    body += xf.chunk("Ref:10/00000001", b"", sha1=True)  # keep-alive: counter 1 at offset 1 MiB
    body += xf.chunk("Ref:10/00000003", ten, sha1=True)  # counter 3 = chunk 2 (counter 2 skipped)
    body += xf.chunk("Ref:9/00000000", GOOD[:MIB]) + xf.chunk("Ref:9/00000001", GOOD[MIB:]) + xf.END
    response = b.import_xva(body)
    assert response.status_code == 200, response.text
    (vm,) = response.text.split()
    x = b.s.xenapi
    disks = {x.VBD.get_userdevice(v): x.VBD.get_VDI(v) for v in x.VM.get_VBDs(vm)}
    assert b.get("/export_raw_vdi", vdi=disks["0"]).content == GOOD
    assert b.get("/export_raw_vdi", vdi=disks["1"]).content == ten + bytes(MIB) + ten
    (vif,) = x.VM.get_VIFs(vm)
    assert x.VIF.get_MAC(vif) != "02:11:22:33:44:55"
    _drop_vm(b, vm)


def test_metadata_export_and_import(sites: Sites) -> None:
    """export_metadata is a tar of ova.xml alone; import_metadata makes the VM again on the VDIs this
    pool already has (matched by uuid), dry_run makes nothing, and a missing VDI is named."""
    a = sites.a
    uuid = a.s.xenapi.VM.get_uuid(sites.vm)
    response = a.get("/export_metadata", uuid=uuid)
    assert response.status_code == 200, response.text
    parsed = xf.parse(response.content)
    assert [n for n, _ in parsed.members] == ["ova.xml"]
    before = a.state()
    dry = a.put("/import_metadata", response.content, dry_run="true")
    assert dry.status_code == 200 and dry.text == "" and a.state() == before
    missing = sites.b.put("/import_metadata", response.content)
    assert missing.status_code == 400 and missing.text.startswith("IMPORT_ERROR_FAILED_TO_FIND_OBJECT")
    made = a.put("/import_metadata", response.content)
    assert made.status_code == 200, made.text
    (vm,) = made.text.split()
    x = a.s.xenapi
    assert sorted(x.VBD.get_VDI(v) for v in x.VM.get_VBDs(vm)) == sorted(
        x.VBD.get_VDI(v) for v in x.VM.get_VBDs(sites.vm)
    )
    for vbd in x.VM.get_VBDs(vm):
        x.VBD.destroy(vbd)
    x.VM.destroy(vm)


def test_export_refused_while_busy(sites: Sites) -> None:
    """An export holds its VM: a second export meanwhile is OTHER_OPERATION_IN_PROGRESS; a running VM
    is VM_BAD_POWER_STATE; the VM is free again once the first export's response has ended."""
    a = sites.a
    uuid = a.s.xenapi.VM.get_uuid(sites.vm)
    params = {"session_id": a.s.handle, "uuid": uuid}
    with httpx.stream("GET", f"{a.server.url}/export", params=params, timeout=60) as first:
        assert first.status_code == 200
        second = a.get("/export", uuid=uuid)
        assert second.status_code == 409 and "OTHER_OPERATION_IN_PROGRESS" in second.text
        first.read()
    assert a.s.xenapi.VM.get_current_operations(sites.vm) == {}
    a.s.xenapi.VM.start(sites.vm, True, False)
    try:
        running = a.get("/export", uuid=uuid)
        assert running.status_code == 409 and running.text.startswith("VM_BAD_POWER_STATE")
    finally:
        a.s.xenapi.VM.hard_shutdown(sites.vm)


def test_roles(sites: Sites) -> None:
    """Export and import need vm-admin, as in xapi: a read-only user and a vm-operator are refused."""
    a = sites.a
    uuid = a.s.xenapi.VM.get_uuid(sites.vm)
    for name, role in (("reader", Role.READ_ONLY), ("operator", Role.VM_OPERATOR)):
        a.server.add_user(name, role)
        session = a.server.session(name, "pw")
        params = {"session_id": session.handle}
        url = a.server.url
        exported = httpx.get(f"{url}/export", params={**params, "uuid": uuid}, timeout=30)
        assert exported.status_code == 403 and exported.text.startswith("RBAC_PERMISSION_DENIED")
        meta = httpx.get(f"{url}/export_metadata", params={**params, "uuid": uuid}, timeout=30)
        assert meta.status_code == 403
        before = a.state()
        body = xf.member("ova.xml", xf.header()) + _chunks("Ref:9", GOOD) + xf.END
        imported = httpx.put(f"{url}/import", params={**params, "sr_id": a.sr}, content=body, timeout=30)
        assert imported.status_code == 403 and a.state() == before
        session.xenapi.session.logout()


def test_raw_vdi_transfers_are_tasks_and_write_in_place(sites: Sites) -> None:
    """/import_raw_vdi behaves as xapi's write in place (an empty PUT changes nothing; a short one
    only its bytes) and reports through the task given; /export_raw_vdi through one of its own."""
    a = sites.a
    vdi = sites.data_vdi
    task = a.s.xenapi.task.create("upload", "")
    empty = a.put("/import_raw_vdi", b"", vdi=vdi, task_id=task)
    assert empty.status_code == 200 and empty.headers["task-id"] == task
    assert wait_task(a.s, task)["status"] == "success"
    assert a.get("/export_raw_vdi", vdi=vdi).content[: len(sites.data)] == sites.data
    short = a.put("/import_raw_vdi", b"Z" * 1000, vdi=vdi)
    assert short.status_code == 200
    exported = a.get("/export_raw_vdi", vdi=vdi)
    assert exported.content[: len(sites.data)] == b"Z" * 1000 + sites.data[1000:]
    record = a.s.xenapi.task.get_record(exported.headers["task-id"])
    assert record["status"] == "success" and float(record["progress"]) == 1.0
    assert a.put("/import_raw_vdi", sites.data, vdi=vdi).status_code == 200
    done = a.s.xenapi.task.get_record(task)
    stale = a.put("/import_raw_vdi", b"x", vdi=vdi, task_id=task)
    assert done["status"] == "success" and stale.status_code == 409
    assert stale.text.startswith("OPERATION_NOT_ALLOWED")


def test_large_sparse_disk_streams_in_bounded_memory(sites: Sites) -> None:
    """A 10 GiB disk with 2 MiB of data exports and imports without the server holding it: the
    export is a few MiB, and the server's peak memory stays far below the disk's size."""
    a, b = sites.a, sites.b
    x = a.s.xenapi
    vdi = x.VDI.create(
        {"SR": a.sr, "virtual_size": str(10 << 30), "type": "user", "name_label": "big", "sharable": False,
         "read_only": False, "other_config": {}, "sm_config": {}}
    )  # fmt: skip
    assert a.put("/import_raw_vdi", b"B" * MIB, vdi=vdi).status_code == 200
    vm = x.VM.create({**_minimal(), "name_label": "big"})
    x.VBD.create(
        {"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": False, "mode": "RW", "type": "Disk", "empty": False,
         "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}
    )  # fmt: skip
    body = _export(a, vm, use_compression="zstd")
    assert len(body) < 4 * MIB
    parsed = xf.parse(body)
    (chunks,) = parsed.chunks.values()
    assert sorted(chunks) == [0, (10 << 10) - 1]
    response = b.import_xva(body)
    assert response.status_code == 200, response.text
    for site in (a, b):
        peak = _peak_rss(site.server)
        assert peak < 1 << 30, f"server peak RSS {peak >> 20} MiB"
    _drop_vm(b, response.text.split()[0])
    _drop_vm(a, vm)


def _minimal() -> dict[str, Any]:
    from pools import MINIMAL_VM

    return dict(MINIMAL_VM)


def _peak_rss(server: PoolServer) -> int:
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_kill_during_export_and_import_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server killed while it streams an export, or after an import's disks are in place but not
    recorded, comes back with the VM free and no VDI, image, record or staging file of the import."""
    make_pool(tmp_path / "p")
    server = PoolServer(tmp_path / "p").start()
    try:
        s = server.session()
        lun = tmp_path / "lun"
        sr = make_sr(s, lun)
        site = Site(server, s, sr, lun)
        vm = bootable_vm(server, s, sr, "KILL")
        body = _export(site, vm)
        before = site.state()
        for point in ("xva-export:streaming", "xva-import:images", "xva-import:recorded"):
            server.stop()
            monkeypatch.setenv("FARSIDE_CRASH_AT", point)
            server.start()
            site.s = server.session()
            uuid = site.s.xenapi.VM.get_uuid(vm)
            with pytest.raises(httpx.HTTPError):
                if point.startswith("xva-export"):
                    site.get("/export", uuid=uuid).raise_for_status()
                else:
                    site.import_xva(body).raise_for_status()
            assert server.process is not None and server.process.wait(10) != 0
            monkeypatch.delenv("FARSIDE_CRASH_AT")
            server.process = None
            server.start()
            site.s = server.session()
            assert site.state() == before, point
            assert site.s.xenapi.VM.get_current_operations(vm) == {}
            assert not [p for p in os.listdir(lun) if p.startswith(".xva-import-")]
    finally:
        server.stop()


def _xe(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FARSIDE_")}
    clean["HOME"] = "/nonexistent-home"
    argv = [sys.executable, "-m", "farside.cli.main", "xe", "-s", site.server.url, "-pw", ADMIN_PASSWORD, *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=clean)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_xe_transfer_commands(sites: Sites, tmp_path: Path) -> None:
    """vm-export (compressed, metadata), vm-import (preserve, into an SR), vdi-export and vdi-import
    with xe's flags; a failed import prints the task's error and exits 1; a failed export leaves no file."""
    a, b = sites.a, sites.b
    uuid = a.s.xenapi.VM.get_uuid(sites.vm)
    xva = tmp_path / "web.xva"
    done = _xe(a, "vm-export", f"vm={uuid}", f"filename={xva}", "compress=zstd")
    assert done.returncode == 0 and done.stdout == "Export succeeded\n", done.stderr
    assert xva.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    sr_uuid = b.s.xenapi.SR.get_uuid(b.sr)
    imported = _xe(b, "vm-import", f"filename={xva}", f"sr-uuid={sr_uuid}", "preserve=true")
    assert imported.returncode == 0 and imported.stdout.strip() == uuid, imported.stderr
    vm = b.s.xenapi.VM.get_by_uuid(uuid)
    again = _xe(b, "vm-import", f"filename={xva}", f"sr-uuid={sr_uuid}", "preserve=true")
    assert again.returncode == 1 and "cannot be imported unforced" in again.stderr
    meta = tmp_path / "web.vmmeta"
    assert _xe(a, "vm-export", "vm=XVATAG", f"filename={meta}", "metadata=true").returncode == 0
    assert xf.parse(meta.read_bytes()).members == [("ova.xml", len(xf.parse(meta.read_bytes()).ova_raw))]
    disk = tmp_path / "disk.raw"
    data_uuid = a.s.xenapi.VDI.get_uuid(sites.data_vdi)
    assert _xe(a, "vdi-export", f"uuid={data_uuid}", f"filename={disk}").returncode == 0
    assert disk.read_bytes()[: len(sites.data)] == sites.data
    x = b.s.xenapi
    target = next(x.VBD.get_VDI(v) for v in x.VM.get_VBDs(vm) if x.VBD.get_userdevice(v) == "1")
    (tmp_path / "z.raw").write_bytes(b"Q" * 4096)
    put = _xe(b, "vdi-import", f"uuid={x.VDI.get_uuid(target)}", f"filename={tmp_path / 'z.raw'}")
    assert put.returncode == 0, put.stderr
    assert b.get("/export_raw_vdi", vdi=target).content[: len(sites.data)] == b"Q" * 4096 + sites.data[4096:]
    bad = tmp_path / "bad.xva"
    bad.write_bytes(_hostile()["corrupt"][0])
    refused = _xe(b, "vm-import", f"filename={bad}", f"sr-uuid={sr_uuid}")
    assert refused.returncode == 1 and "Block Ref:9/00000000 checksum failed" in refused.stderr, refused.stderr
    a.s.xenapi.VM.start(sites.vm, True, False)
    try:
        lost = _xe(a, "vm-export", f"vm={uuid}", f"filename={tmp_path / 'running.xva'}")
        assert lost.returncode == 1 and "power state" in lost.stderr, lost.stderr
        assert sorted(p.name for p in tmp_path.iterdir() if "running" in p.name) == []
    finally:
        a.s.xenapi.VM.hard_shutdown(sites.vm)
    _drop_vm(b, vm)


def test_cancelled_import_leaves_nothing(sites: Sites) -> None:
    """task.cancel while an import streams stops it: the task ends cancelled, nothing is left."""
    import threading

    b = sites.b
    before = b.state()
    task = b.s.xenapi.task.create("import", "")
    cancelled = threading.Event()

    def body() -> Iterator[bytes]:
        yield xf.member("ova.xml", xf.header(disk_size=4 * MIB)) + xf.chunk("Ref:9/00000000", GOOD[:MIB])
        cancelled.wait(30)
        for n in range(1, 4):
            yield xf.chunk(f"Ref:9/{n:08d}", GOOD[:MIB])
        yield xf.END

    answer: list[httpx.Response] = []
    params = {"session_id": b.s.handle, "sr_id": b.sr, "task_id": task}
    sender = threading.Thread(
        target=lambda: answer.append(httpx.put(f"{b.server.url}/import", params=params, content=body(), timeout=60))
    )
    sender.start()
    deadline = time.monotonic() + 30
    while float(b.s.xenapi.task.get_progress(task)) == 0.0 and not list(b.lun.glob(".xva-import-*.raw")):
        assert time.monotonic() < deadline, "the import never started"
        time.sleep(0.05)
    b.s.xenapi.task.cancel(task)
    cancelled.set()
    sender.join(60)
    assert answer[0].status_code == 409 and answer[0].text.startswith("TASK_CANCELLED"), answer[0].text
    assert wait_task(b.s, task)["status"] == "cancelled"
    assert b.state() == before

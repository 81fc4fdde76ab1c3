"""Hostile images against a real server and real qemu-img: no image reaches a host file.

Each test is an attack from issue 13 ("Why" 2): a qcow2 header naming a backing file or an
external data file, put where a VDI's image is (an upload, a guest's own writes, a LUN a mirror
brought). The server must read every image in its recorded format and refuse those that are not
self-contained, so the host file never comes back and never changes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid as uuidlib
from pathlib import Path

import httpx
import pytest
import XenAPI

from pools import MINIMAL_VM, PoolServer
from vms import qemu_pids

MIB = 1 << 20
SECRET = b"the host's own secret\n" * 1000
UNSAFE = "SR_BACKEND_FAILURE_IMAGE_UNSAFE"


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def hostile(path: Path, *, backing: Path | None = None, data_file: Path | None = None, size: int = MIB) -> bytes:
    """A qcow2 image whose header names ``backing`` or ``data_file``; its bytes, padded to ``size``."""
    options = ["-b", str(backing), "-F", "raw"] if backing else ["-o", f"data_file={data_file}"]
    qemu_img("create", "-q", "-f", "qcow2", *options, str(path), str(size))
    os.truncate(path, size)
    return path.read_bytes()


def sr_on(s: XenAPI.Session, lun: Path) -> str:
    lun.mkdir(parents=True, exist_ok=True)
    host = s.xenapi.host.get_all()[0]
    return str(s.xenapi.SR.create(host, {"path": str(lun)}, "0", "LUN", "", "file", "user", True, {}))


def vdi_on(s: XenAPI.Session, sr: str, fmt: str, size: int = MIB) -> str:
    record = {"SR": sr, "virtual_size": str(size), "type": "user", "name_label": "disk", "name_description": "",
              "sharable": False, "read_only": False, "other_config": {}, "sm_config": {"type": fmt}}  # fmt: skip
    return str(s.xenapi.VDI.create(record))


def upload(server: PoolServer, s: XenAPI.Session, vdi: str, data: bytes, fmt: str = "raw") -> httpx.Response:
    params = {"session_id": s.handle, "vdi": vdi, "format": fmt}
    return httpx.put(f"{server.url}/import_raw_vdi", params=params, content=data, timeout=60)


def export(server: PoolServer, s: XenAPI.Session, vdi: str) -> httpx.Response:
    params = {"session_id": s.handle, "vdi": vdi, "format": "raw"}
    return httpx.get(f"{server.url}/export_raw_vdi", params=params, timeout=60)


def image_of(lun: Path, s: XenAPI.Session, vdi: str) -> Path:
    return lun / s.xenapi.VDI.get_location(vdi)


def leftovers(lun: Path) -> list[str]:
    """Files on the LUN that are neither the SR's records nor a VDI's image (temporary files)."""
    return [p.name for p in lun.iterdir() if p.name != ".farside-sr" and not p.name.endswith((".qcow2", ".raw"))]


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A host file outside every SR, standing for /etc/shadow."""
    path = tmp_path / "shadow"
    path.write_bytes(SECRET)
    return path


@pytest.fixture
def pool(shared_server: PoolServer, tmp_path: Path) -> tuple[PoolServer, XenAPI.Session, Path, str]:
    s = shared_server.session()
    lun = tmp_path / "lun"
    return shared_server, s, lun, sr_on(s, lun)


Pool = tuple[PoolServer, XenAPI.Session, Path, str]


class TestRawVdiWithQcow2Header:
    """A vm-admin uploads, with format=raw, a qcow2 header whose backing file is a host file."""

    @pytest.mark.parametrize("target", ["outside", "pool.db"])
    def test_export_clone_snapshot_give_the_uploaded_bytes(self, pool: Pool, secret: Path, target: str) -> None:
        server, s, lun, sr = pool
        backing = secret if target == "outside" else server.data_dir / "pool.db"
        data = hostile(lun.parent / "hostile.qcow2", backing=backing)
        vdi = vdi_on(s, sr, "raw")
        assert upload(server, s, vdi, data).status_code == 200
        copies = [vdi, s.xenapi.VDI.clone(vdi, {}), s.xenapi.VDI.snapshot(vdi, {})]
        for each in copies:
            got = export(server, s, each)
            assert got.status_code == 200, got.text
            assert got.content == data
            assert SECRET[:64] not in got.content and b"SQLite format 3" not in got.content
        # the copies are raw disks holding the same harmless bytes, not qcow2 images of the host file
        assert all(image_of(lun, s, c).read_bytes() == data for c in copies)

    def test_guest_written_header_is_harmless(self, pool: Pool, secret: Path) -> None:
        """A guest writes a qcow2 header into its own raw disk: the next clone and export are bytes."""
        server, s, lun, sr = pool
        vdi = vdi_on(s, sr, "raw")
        assert upload(server, s, vdi, os.urandom(MIB)).status_code == 200
        header = hostile(lun.parent / "header.qcow2", backing=secret)[: 64 << 10]
        with open(image_of(lun, s, vdi), "r+b") as disk:  # what the guest's writes do to the file
            disk.write(header)
        expected = image_of(lun, s, vdi).read_bytes()
        clone = s.xenapi.VDI.clone(vdi, {})
        for each in (vdi, clone):
            got = export(server, s, each)
            assert got.status_code == 200 and got.content == expected

    def test_resize_with_data_file_does_not_grow_the_host_file(self, pool: Pool, tmp_path: Path) -> None:
        server, s, lun, sr = pool
        host_file = tmp_path / "host-file"
        data = hostile(lun.parent / "d.qcow2", data_file=host_file)
        host_file.write_bytes(SECRET)
        vdi = vdi_on(s, sr, "raw")
        assert upload(server, s, vdi, data).status_code == 200
        s.xenapi.VDI.resize(vdi, str(64 * MIB))
        assert host_file.read_bytes() == SECRET
        assert int(s.xenapi.VDI.get_virtual_size(vdi)) == 64 * MIB
        assert export(server, s, vdi).content == data + bytes(63 * MIB)


class TestQcow2Vdi:
    """qcow2 VDIs: their images must be qcow2 and self-contained, however they were written."""

    def test_upload_with_backing_file_is_refused(self, pool: Pool, secret: Path) -> None:
        server, s, lun, sr = pool
        vdi = vdi_on(s, sr, "qcow2")
        before = os.urandom(MIB)
        assert upload(server, s, vdi, before).status_code == 200
        backed = hostile(lun.parent / "b.qcow2", backing=secret)
        for data in (backed, hostile(lun.parent / "d.qcow2", data_file=lun.parent / "df")):
            refused = upload(server, s, vdi, data, "qcow2")
            assert refused.status_code == 400 and refused.text.startswith(UNSAFE), refused.text
        assert export(server, s, vdi).content == before
        assert leftovers(lun) == []

    def test_raw_upload_into_a_missing_qcow2_image_is_converted(self, pool: Pool, secret: Path) -> None:
        """The image was gone: the raw upload is still converted, never renamed into a .qcow2 as-is."""
        server, s, lun, sr = pool
        vdi = vdi_on(s, sr, "qcow2")
        image_of(lun, s, vdi).unlink()
        data = hostile(lun.parent / "b.qcow2", backing=secret)
        assert upload(server, s, vdi, data).status_code == 200
        assert export(server, s, vdi).content == data
        info = subprocess.run(["qemu-img", "info", "-U", "-f", "qcow2", "--output=json", str(image_of(lun, s, vdi))],
                              capture_output=True, check=True, text=True)  # fmt: skip
        assert "backing-filename" not in json.loads(info.stdout)
        assert leftovers(lun) == []

    def test_qcow2_uploads(self, pool: Pool, tmp_path: Path) -> None:
        """A self-contained qcow2 upload replaces a qcow2 image and is converted into a raw one; one
        larger than the VDI is VDI_TOO_SMALL, bytes that are not qcow2 are refused; nothing is left."""
        server, s, lun, sr = pool
        content = os.urandom(MIB // 2)
        (tmp_path / "content.raw").write_bytes(content)
        qemu_img("convert", "-f", "raw", "-O", "qcow2", str(tmp_path / "content.raw"), str(tmp_path / "up.qcow2"))
        upload_bytes = (tmp_path / "up.qcow2").read_bytes()
        for fmt in ("qcow2", "raw"):
            vdi = vdi_on(s, sr, fmt, 2 * MIB)
            assert upload(server, s, vdi, upload_bytes, "qcow2").status_code == 200
            assert export(server, s, vdi).content == content + bytes(2 * MIB - len(content))
        small = vdi_on(s, sr, "qcow2", MIB // 4)
        too_big = upload(server, s, small, upload_bytes, "qcow2")
        assert too_big.status_code == 409 and too_big.text.startswith("VDI_TOO_SMALL"), too_big.text
        not_qcow2 = upload(server, s, small, b"plain bytes" * 100, "qcow2")
        assert not_qcow2.status_code == 400 and not_qcow2.text.startswith(UNSAFE) and "qcow2" in not_qcow2.text
        assert leftovers(lun) == []

    def test_image_replaced_on_the_lun(self, pool: Pool, secret: Path) -> None:
        """A qcow2 VDI's image swapped for one with a backing file, or for raw bytes: export, clone,
        snapshot and resize refuse it, and nothing is made."""
        server, s, lun, sr = pool
        vdi = vdi_on(s, sr, "qcow2")
        path = image_of(lun, s, vdi)
        for swapped in (hostile(lun.parent / "b.qcow2", backing=secret), b"raw bytes" * 1000):
            path.write_bytes(swapped)
            got = export(server, s, vdi)
            assert got.status_code == 400 and got.text.startswith(UNSAFE), got.text
            for call in (s.xenapi.VDI.clone, s.xenapi.VDI.snapshot):
                with pytest.raises(XenAPI.Failure) as info:
                    call(vdi, {})
                assert info.value.details[0] == UNSAFE and str(path) in info.value.details[1]
            with pytest.raises(XenAPI.Failure) as info:
                s.xenapi.VDI.resize(vdi, str(4 * MIB))
            assert info.value.details[0] == UNSAFE
            assert path.read_bytes() == swapped
        assert len(s.xenapi.SR.get_VDIs(sr)) == 1 and leftovers(lun) == []
        assert secret.read_bytes() == SECRET


def place_on_lun(lun: Path, image: bytes, fmt: str = "qcow2") -> str:
    """Put an image and its VDI record straight onto a LUN, as a mirror or a copy would bring it."""
    vdi_uuid = str(uuidlib.uuid4())
    location = f"{vdi_uuid}.{fmt}"
    (lun / location).write_bytes(image)
    record = {"uuid": vdi_uuid, "name_label": "brought", "name_description": "", "type": "user",
              "virtual_size": MIB, "location": location, "sharable": False, "read_only": False,
              "sm_config": {"type": fmt}, "metadata_of_pool": "", "is_a_snapshot": False, "snapshot_of": "",
              "snapshot_time": "19700101T00:00:00Z"}  # fmt: skip
    (lun / ".farside-sr" / "vdis" / f"{vdi_uuid}.json").write_text(json.dumps(record))
    return vdi_uuid


class TestImagesBroughtOntoALun:
    def test_scan_and_introduce_skip_them(self, pool: Pool, secret: Path) -> None:
        """SR.scan, and introduce + plug (what a DR attach does), skip a backed image with a warning
        naming it, import the rest, and never fail as a whole."""
        server, s, lun, sr = pool
        good = s.xenapi.VDI.get_uuid(vdi_on(s, sr, "qcow2"))
        bad = place_on_lun(lun, hostile(lun.parent / "b.qcow2", backing=secret))
        raw_header = place_on_lun(lun, hostile(lun.parent / "r.qcow2", backing=secret), "raw")
        s.xenapi.SR.scan(sr)
        found = {s.xenapi.VDI.get_uuid(v) for v in s.xenapi.SR.get_VDIs(sr)}
        assert found == {good, raw_header}  # a raw disk holding a qcow2 header is a raw disk
        log = (server.data_dir / "server.log").read_text()
        assert f"skips VDI {bad}" in log and str(secret) in log
        sr_uuid = s.xenapi.SR.get_uuid(sr)
        pbd = s.xenapi.SR.get_PBDs(sr)[0]
        s.xenapi.PBD.unplug(pbd)
        s.xenapi.SR.forget(sr)
        again = s.xenapi.SR.introduce(sr_uuid, "copy", "", "file", "user", True, {})
        host = s.xenapi.host.get_all()[0]
        s.xenapi.PBD.plug(s.xenapi.PBD.create({"host": host, "SR": again, "device_config": {"path": str(lun)}}))
        assert {s.xenapi.VDI.get_uuid(v) for v in s.xenapi.SR.get_VDIs(again)} == {good, raw_header}

    def test_vm_start_refuses_a_backed_disk(self, server: PoolServer, tmp_path: Path, secret: Path) -> None:
        """A VM whose disk image was replaced on the LUN by one with a backing file does not start:
        no QEMU opens it. A rescan keeps the VDI, marked missing."""
        s = server.session()
        lun = tmp_path / "lun"
        sr = sr_on(s, lun)
        vdi = vdi_on(s, sr, "qcow2")
        vm = s.xenapi.VM.create(MINIMAL_VM)
        s.xenapi.VBD.create(
            {"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW", "type": "Disk", "empty": False,
             "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}
        )  # fmt: skip
        image_of(lun, s, vdi).write_bytes(hostile(tmp_path / "b.qcow2", backing=secret))
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VM.start(vm, False, False)
        assert info.value.details[0] == UNSAFE and "backing file" in info.value.details[1]
        assert s.xenapi.VM.get_power_state(vm) == "Halted" and qemu_pids(server) == []
        s.xenapi.SR.scan(sr)
        assert s.xenapi.VDI.get_missing(vdi) is True
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VM.start(vm, False, False)
        assert info.value.details[0] == UNSAFE and qemu_pids(server) == []

    def test_dr_attach_of_a_mirrored_lun_skips_them(self, pool: Pool, server: PoolServer, secret: Path) -> None:
        """A copy of the primary's LUN (what a mirror delivers) holding a backed image: the DR site's
        DR_task.create attaches the SR with its good VDIs only."""
        _, s, lun, sr = pool
        good = s.xenapi.VDI.get_uuid(vdi_on(s, sr, "qcow2"))
        mirrored = lun.parent / "mirrored"
        shutil.copytree(lun, mirrored)
        bad = place_on_lun(mirrored, hostile(lun.parent / "b.qcow2", backing=secret))
        dr = server.session()
        sr_uuid = s.xenapi.SR.get_uuid(sr)
        task = dr.xenapi.DR_task.create("file", {"path": str(mirrored)}, [sr_uuid])
        attached = dr.xenapi.DR_task.get_introduced_SRs(task)
        assert [dr.xenapi.SR.get_uuid(x) for x in attached] == [sr_uuid]
        assert {dr.xenapi.VDI.get_uuid(v) for v in dr.xenapi.SR.get_VDIs(attached[0])} == {good}
        assert f"skips VDI {bad}" in (server.data_dir / "server.log").read_text()
        dr.xenapi.DR_task.destroy(task)

"""File SRs over real HTTP: LUN formatting, probe, introduce/forget, VDIs, raw transfer, leases."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
import XenAPI

from pools import PoolServer

MIB = 1 << 20


def create_sr(s: XenAPI.Session, lun: Path, name: str = "LUN") -> str:
    host = s.xenapi.host.get_all()[0]
    return str(s.xenapi.SR.create(host, {"path": str(lun)}, "0", name, "test SR", "file", "user", True, {}))


def create_vdi(s: XenAPI.Session, sr: str, size: int = 8 * MIB, **extra: object) -> str:
    record = {
        "SR": sr,
        "virtual_size": str(size),
        "type": "user",
        "name_label": "disk",
        "name_description": "",
        "sharable": False,
        "read_only": False,
        "other_config": {},
        "sm_config": {},
        **extra,
    }
    return str(s.xenapi.VDI.create(record))


def sr_uuid_on(lun: Path) -> str:
    import json

    return str(json.loads((lun / ".farside-sr" / "sr.json").read_text())["uuid"])


class TestSR:
    def test_create_probe_forget_introduce(self, shared_server: PoolServer, tmp_path: Path) -> None:
        """A made SR is found by probe; forgotten and introduced again, it has the same uuid and VDIs."""
        s = shared_server.session()
        host = s.xenapi.host.get_all()[0]
        lun = tmp_path / "lun"
        lun.mkdir()
        assert "<SR>" not in s.xenapi.SR.probe(host, {"path": str(lun)}, "file", {})
        sr = create_sr(s, lun, "Gold")
        record = s.xenapi.SR.get_record(sr)
        assert record["type"] == "file" and record["shared"] and int(record["physical_size"]) > 0
        vdi = create_vdi(s, sr)
        vdi_uuid = s.xenapi.VDI.get_uuid(vdi)
        probe = s.xenapi.SR.probe(host, {"path": str(lun)}, "file", {})
        assert f"<UUID>{record['uuid']}</UUID>" in probe and "<name_label>Gold</name_label>" in probe
        assert "<pool_metadata_detected>false</pool_metadata_detected>" in probe
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.SR.forget(sr)
        assert info.value.details == ["SR_HAS_PBD", sr]
        s.xenapi.PBD.unplug(record["PBDs"][0])
        s.xenapi.SR.forget(sr)
        assert sorted(os.listdir(lun)) == sorted(
            [".farside-sr", s.xenapi.VDI.get_location(vdi) if False else f"{vdi_uuid}.qcow2"]
        )
        again = s.xenapi.SR.introduce(record["uuid"], "Gold", "", "file", "user", True, {})
        pbd = s.xenapi.PBD.create({"host": host, "SR": again, "device_config": {"path": str(lun)}})
        s.xenapi.PBD.plug(pbd)
        assert s.xenapi.SR.get_uuid(again) == record["uuid"]
        assert [s.xenapi.VDI.get_uuid(v) for v in s.xenapi.SR.get_VDIs(again)] == [vdi_uuid]
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.SR.introduce(record["uuid"], "dup", "", "file", "user", True, {})
        assert info.value.details == ["SR_UUID_EXISTS", record["uuid"]]

    def test_bad_lun_paths(self, shared_server: PoolServer, tmp_path: Path) -> None:
        """Missing, relative, non-directory and already-used LUNs are refused, nothing half made."""
        s = shared_server.session()
        (tmp_path / "file").write_text("x")
        cases = {tmp_path / "missing": "SR_BACKEND_FAILURE_PATH", tmp_path / "file": "SR_BACKEND_FAILURE_PATH",
                 Path("relative/dir"): "INVALID_VALUE"}  # fmt: skip
        for path, code in cases.items():
            with pytest.raises(XenAPI.Failure) as info:
                create_sr(s, path)
            assert info.value.details[0] == code, path
        used = tmp_path / "used"
        used.mkdir()
        create_sr(s, used)
        srs = set(s.xenapi.SR.get_all())
        with pytest.raises(XenAPI.Failure) as info:
            create_sr(s, used)
        assert info.value.details[0] == "SR_BACKEND_FAILURE_FORMAT"
        assert set(s.xenapi.SR.get_all()) == srs
        host = s.xenapi.host.get_all()[0]
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.SR.create(host, {"path": str(tmp_path)}, "0", "x", "", "nfs", "user", True, {})
        assert info.value.details == ["SR_UNKNOWN_DRIVER", "nfs"]

    def test_destroy_deletes_only_its_own_files(self, shared_server: PoolServer, tmp_path: Path) -> None:
        """SR.destroy removes the SR's images and records, not other files in the directory."""
        s = shared_server.session()
        lun = tmp_path / "lun"
        lun.mkdir()
        (lun / "operator-notes.txt").write_text("keep")
        sr = create_sr(s, lun)
        create_vdi(s, sr)
        s.xenapi.SR.destroy(sr)
        assert os.listdir(lun) == ["operator-notes.txt"]
        assert sr not in s.xenapi.SR.get_all()

    def test_scan_finds_vdis_another_pool_wrote(self, shared_server: PoolServer, tmp_path: Path) -> None:
        """A VDI record added to the LUN from elsewhere appears on scan; a removed one disappears."""
        s = shared_server.session()
        lun = tmp_path / "lun"
        lun.mkdir()
        sr = create_sr(s, lun)
        vdi = create_vdi(s, sr)
        vdi_uuid = s.xenapi.VDI.get_uuid(vdi)
        record = (lun / ".farside-sr" / "vdis" / f"{vdi_uuid}.json").read_text()
        (lun / ".farside-sr" / "vdis" / f"{vdi_uuid}.json").unlink()
        twin = record.replace(vdi_uuid, "11111111-2222-3333-4444-555555555555")
        shutil.copy(lun / f"{vdi_uuid}.qcow2", lun / "11111111-2222-3333-4444-555555555555.qcow2")
        (lun / ".farside-sr" / "vdis" / "11111111-2222-3333-4444-555555555555.json").write_text(twin)
        s.xenapi.SR.scan(sr)
        assert [s.xenapi.VDI.get_uuid(v) for v in s.xenapi.SR.get_VDIs(sr)] == ["11111111-2222-3333-4444-555555555555"]


class TestVDI:
    def test_lifecycle(self, shared_server: PoolServer, tmp_path: Path) -> None:
        """create, clone, snapshot, resize, rename and destroy keep LUN and pool in step."""
        s = shared_server.session()
        lun = tmp_path / "lun"
        lun.mkdir()
        sr = create_sr(s, lun)
        vdi = create_vdi(s, sr, 8 * MIB)
        location = s.xenapi.VDI.get_location(vdi)
        assert location.endswith(".qcow2") and (lun / location).exists()
        raw = create_vdi(s, sr, 4 * MIB, sm_config={"type": "raw"})
        assert (
            s.xenapi.VDI.get_location(raw).endswith(".raw")
            and (lun / s.xenapi.VDI.get_location(raw)).stat().st_size == 4 * MIB
        )
        clone = s.xenapi.VDI.clone(vdi, {})
        snap = s.xenapi.VDI.snapshot(vdi, {})
        assert s.xenapi.VDI.get_is_a_snapshot(snap) and s.xenapi.VDI.get_snapshot_of(snap) == vdi
        assert s.xenapi.VDI.get_snapshots(vdi) == [snap]
        assert not s.xenapi.VDI.get_is_a_snapshot(clone)
        s.xenapi.VDI.resize(vdi, str(16 * MIB))
        assert s.xenapi.VDI.get_virtual_size(vdi) == str(16 * MIB)
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VDI.resize(vdi, str(MIB))
        assert info.value.details[0] == "VDI_TOO_SMALL"
        s.xenapi.VDI.set_name_label(vdi, "renamed")
        uuid = s.xenapi.VDI.get_uuid(vdi)
        assert '"renamed"' in (lun / ".farside-sr" / "vdis" / f"{uuid}.json").read_text()
        s.xenapi.VDI.destroy(vdi)
        assert not (lun / location).exists() and vdi not in s.xenapi.VDI.get_all()
        assert s.xenapi.VDI.get_snapshot_of(snap) == "OpaqueRef:NULL"

    def test_vdi_needs_a_plugged_sr(self, shared_server: PoolServer, tmp_path: Path) -> None:
        """VDI.create on an unplugged SR: SR_HAS_NO_PBDS, no image written."""
        s = shared_server.session()
        lun = tmp_path / "lun"
        lun.mkdir()
        sr = create_sr(s, lun)
        s.xenapi.PBD.unplug(s.xenapi.SR.get_PBDs(sr)[0])
        with pytest.raises(XenAPI.Failure) as info:
            create_vdi(s, sr)
        assert info.value.details == ["SR_HAS_NO_PBDS", sr]
        assert not list(lun.glob("*.qcow2"))


class TestRawTransfer:
    def test_round_trip(self, shared_server: PoolServer, tmp_path: Path) -> None:
        """Bytes put with import_raw_vdi come back identical from export_raw_vdi, holes included."""
        s = shared_server.session()
        lun = tmp_path / "lun"
        lun.mkdir()
        sr = create_sr(s, lun)
        for fmt in ({}, {"type": "raw"}):
            vdi = create_vdi(s, sr, 4 * MIB, sm_config=fmt)
            data = os.urandom(MIB) + bytes(2 * MIB) + os.urandom(MIB // 2)
            url = f"{shared_server.url}/import_raw_vdi"
            params = {"session_id": s.handle, "vdi": vdi, "format": "raw"}
            response = httpx.put(url, params=params, content=data, timeout=60)
            assert response.status_code == 200, response.text
            got = httpx.get(f"{shared_server.url}/export_raw_vdi", params=params, timeout=60)
            assert got.status_code == 200
            assert hashlib.sha256(got.content).digest() == hashlib.sha256(data + bytes(MIB // 2)).digest()

    def test_transfer_errors(self, shared_server: PoolServer, tmp_path: Path) -> None:
        """Bad session 401, weak role 403, unknown VDI 404, oversize upload 400; the disk unchanged."""
        from farside.model.roles import Role

        s = shared_server.session()
        lun = tmp_path / "lun"
        lun.mkdir()
        vdi = create_vdi(s, create_sr(s, lun), MIB)
        url = f"{shared_server.url}/import_raw_vdi"
        assert httpx.put(url, params={"session_id": "x", "vdi": vdi}, content=b"a").status_code == 401
        shared_server.add_user("viewer", Role.VM_OPERATOR, "pw")
        weak = shared_server.session("viewer", "pw")
        assert httpx.put(url, params={"session_id": weak.handle, "vdi": vdi}, content=b"a").status_code == 403
        assert httpx.put(url, params={"session_id": s.handle, "vdi": "OpaqueRef:x"}, content=b"a").status_code == 404
        big = httpx.put(url, params={"session_id": s.handle, "vdi": vdi}, content=bytes(2 * MIB))
        assert big.status_code == 400 and "larger" in big.text
        other = httpx.put(url, params={"session_id": s.handle, "vdi": vdi, "format": "vhd"}, content=b"a")
        assert other.status_code == 400
        assert not [p for p in lun.iterdir() if "import" in p.name]


class TestLeases:
    def _introduce(self, s: XenAPI.Session, lun: Path) -> tuple[str, str]:
        host = s.xenapi.host.get_all()[0]
        sr = s.xenapi.SR.introduce(sr_uuid_on(lun), "copy", "", "file", "user", True, {})
        pbd = s.xenapi.PBD.create({"host": host, "SR": sr, "device_config": {"path": str(lun)}})
        return sr, pbd

    def test_one_lun_one_pool(self, two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
        """B cannot plug a LUN A holds (told who holds it); it can once A unplugs."""
        a, b = two_pools
        sa, sb = a.session(), b.session()
        lun = tmp_path / "lun"
        lun.mkdir()
        sr_a = create_sr(sa, lun)
        _, pbd_b = self._introduce(sb, lun)
        with pytest.raises(XenAPI.Failure) as info:
            sb.xenapi.PBD.plug(pbd_b)
        pool_a = sa.xenapi.pool.get_record(sa.xenapi.pool.get_all()[0])
        assert info.value.details[:4] == ["LUN_LEASED_BY_OTHER_POOL", str(lun), pool_a["uuid"], "Site A"]
        assert not sb.xenapi.PBD.get_currently_attached(pbd_b)
        sa.xenapi.PBD.unplug(sa.xenapi.SR.get_PBDs(sr_a)[0])
        sb.xenapi.PBD.plug(pbd_b)
        assert sb.xenapi.PBD.get_currently_attached(pbd_b)

    def test_a_copy_of_the_lun_plugs_elsewhere(self, two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
        """A cp -a copy of a plugged LUN carries no live lease: B plugs it while A runs."""
        a, b = two_pools
        sa, sb = a.session(), b.session()
        lun = tmp_path / "lun"
        lun.mkdir()
        sr_a = create_sr(sa, lun)
        vdi_uuid = sa.xenapi.VDI.get_uuid(create_vdi(sa, sr_a))
        copy = tmp_path / "copy"
        subprocess.run(["cp", "-a", str(lun), str(copy)], check=True)
        sr_b, pbd_b = self._introduce(sb, copy)
        sb.xenapi.PBD.plug(pbd_b)
        assert sb.xenapi.SR.get_uuid(sr_b) == sa.xenapi.SR.get_uuid(sr_a)
        assert [sb.xenapi.VDI.get_uuid(v) for v in sb.xenapi.SR.get_VDIs(sr_b)] == [vdi_uuid]
        assert sa.xenapi.PBD.get_currently_attached(sa.xenapi.SR.get_PBDs(sr_a)[0])

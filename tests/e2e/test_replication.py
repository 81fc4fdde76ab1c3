"""Metadata replication through XenAPI: enable/disable, limits and errors, reading at the other site."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from pools import MINIMAL_VM, PoolServer
from vms import make_sr

VM = MINIMAL_VM


def value(result: dict[str, object]) -> Any:
    """The Value of a raw call's envelope (DR calls go through the raw proxy with another session)."""
    assert result["Status"] == "Success", result
    return result["Value"]


def metadata_vdis(s: XenAPI.Session, sr: str) -> list[str]:
    return [v for v in s.xenapi.SR.get_VDIs(sr) if s.xenapi.VDI.get_type(v) == "metadata"]


class TestEnable:
    def test_enable_creates_one_metadata_vdi(self, server: PoolServer, tmp_path: Path) -> None:
        """enable makes 'Metadata for DR' on the SR, listed in pool.metadata_VDIs, current and described."""
        s = server.session()
        sr = make_sr(s, tmp_path / "lun")
        s.xenapi.SR.assert_supports_database_replication(sr)
        s.xenapi.SR.enable_database_replication(sr)
        s.xenapi.SR.enable_database_replication(sr)  # again: still one VDI
        vdis = metadata_vdis(s, sr)
        assert len(vdis) == 1
        pool = s.xenapi.pool.get_all()[0]
        assert s.xenapi.pool.get_metadata_VDIs(pool) == vdis
        record = s.xenapi.VDI.get_record(vdis[0])
        assert record["name_label"] == "Metadata for DR" and record["name_description"] == "Used for disaster recovery"
        assert record["metadata_of_pool"] == pool and record["metadata_latest"]
        assert record["sm_config"]["farside-pool-name"] == "Site A"
        assert s.xenapi.VDI.read_database_pool_uuid(vdis[0]) == s.xenapi.pool.get_uuid(pool)
        s.xenapi.SR.disable_database_replication(sr)
        assert metadata_vdis(s, sr) == [] and s.xenapi.pool.get_metadata_VDIs(pool) == []
        assert not list((tmp_path / "lun").glob("*.raw"))

    def test_unplugged_sr_is_refused(self, server: PoolServer, tmp_path: Path) -> None:
        """An SR with no attached PBD cannot hold the pool's metadata: SR_HAS_NO_PBDS."""
        s = server.session()
        sr = make_sr(s, tmp_path / "lun")
        s.xenapi.PBD.unplug(s.xenapi.SR.get_PBDs(sr)[0])
        for call in (s.xenapi.SR.assert_supports_database_replication, s.xenapi.SR.enable_database_replication):
            with pytest.raises(XenAPI.Failure) as info:
                call(sr)
            assert info.value.details == ["SR_HAS_NO_PBDS", sr]

    def test_at_most_eight_targets(self, server: PoolServer, tmp_path: Path) -> None:
        """A ninth SR gets NO_MORE_REDO_LOGS_ALLOWED, as in xapi."""
        s = server.session()
        srs = [make_sr(s, tmp_path / f"lun{i}") for i in range(9)]
        for sr in srs[:8]:
            s.xenapi.SR.enable_database_replication(sr)
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.SR.enable_database_replication(srs[8])
        assert info.value.details == ["NO_MORE_REDO_LOGS_ALLOWED"]
        assert metadata_vdis(s, srs[8]) == []

    def test_every_change_reaches_the_vdi(self, server: PoolServer, tmp_path: Path) -> None:
        """A change is on the metadata VDI when the call that made it returns."""
        from farside.replication import format as fmt

        s = server.session()
        sr = make_sr(s, tmp_path / "lun")
        s.xenapi.SR.enable_database_replication(sr)
        image = tmp_path / "lun" / s.xenapi.VDI.get_location(metadata_vdis(s, sr)[0])
        vm = s.xenapi.VM.create(VM)
        for i in range(5):
            s.xenapi.VM.set_name_label(vm, f"name {i}")
            with open(image, "rb") as fh:
                snapshot, _, _ = fmt.newest(fh)
            assert snapshot is not None and snapshot.objects["VM"][vm]["name_label"] == f"name {i}"
        assert "user" not in snapshot.objects and "session" not in snapshot.objects

    def test_replication_resumes_after_restart(self, pool_dir: Path, tmp_path: Path) -> None:
        """After a server restart the metadata VDI keeps receiving changes."""
        from farside.replication import format as fmt

        server = PoolServer(pool_dir).start()
        try:
            s = server.session()
            sr = make_sr(s, tmp_path / "lun")
            s.xenapi.SR.enable_database_replication(sr)
            image = tmp_path / "lun" / s.xenapi.VDI.get_location(metadata_vdis(s, sr)[0])
        finally:
            server.stop()
        server = PoolServer(pool_dir).start()
        try:
            s = server.session()
            vm = s.xenapi.VM.create({**VM, "name_label": "after restart"})
            with open(image, "rb") as fh:
                snapshot, _, _ = fmt.newest(fh)
            assert snapshot is not None and snapshot.objects["VM"][vm]["name_label"] == "after restart"
        finally:
            server.stop()


class TestOtherSite:
    def test_open_a_copy_at_the_other_site(self, two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
        """B plugs a copy of A's LUN, sees A's metadata as latest, and reads A's VMs through open_database."""
        a, b = two_pools
        sa, sb = a.session(), b.session()
        lun = tmp_path / "lun"
        sr = make_sr(sa, lun)
        sa.xenapi.SR.enable_database_replication(sr)
        app = sa.xenapi.VM_appliance.create({"name_label": "web", "name_description": ""})
        vm = sa.xenapi.VM.create({**VM, "name_label": "db server"})
        sa.xenapi.VM.set_appliance(vm, app)
        sa.xenapi.VM.set_order(vm, 2)
        sa.xenapi.VM.set_start_delay(vm, 7)
        subprocess.run(["cp", "-a", str(lun), str(tmp_path / "copy")], check=True)
        host = sb.xenapi.host.get_all()[0]
        sr_b = sb.xenapi.SR.introduce(sa.xenapi.SR.get_uuid(sr), "copy", "", "file", "user", True, {})
        pbd = sb.xenapi.PBD.create({"host": host, "SR": sr_b, "device_config": {"path": str(tmp_path / "copy")}})
        sb.xenapi.PBD.plug(pbd)
        [vdi] = metadata_vdis(sb, sr_b)
        pool_a = sa.xenapi.pool.get_record(sa.xenapi.pool.get_all()[0])
        assert sb.xenapi.VDI.read_database_pool_uuid(vdi) == pool_a["uuid"]
        record = sb.xenapi.VDI.get_record(vdi)
        assert record["metadata_latest"] and record["sm_config"]["farside-pool-name"] == "Site A"
        assert vdi not in sb.xenapi.pool.get_metadata_VDIs(sb.xenapi.pool.get_all()[0])
        db = sb.xenapi.VDI.open_database(vdi)
        vms = value(sb.VM.get_all_records(db))
        [(ref, got)] = [(r, v) for r, v in vms.items() if v["name_label"] == "db server"]
        assert got["uuid"] == sa.xenapi.VM.get_uuid(vm)
        assert (got["order"], got["start_delay"]) == ("2", "7")
        apps = value(sb.VM_appliance.get_all_records(db))
        assert [a_["name_label"] for a_ in apps.values()] == ["web"] and got["appliance"] in apps
        pools = value(sb.pool.get_all_records(db))
        assert [p["name_label"] for p in pools.values()] == ["Site A"]
        denied = sb.VM.set_name_label(db, ref, "changed")
        assert denied["ErrorDescription"][0] == "RBAC_PERMISSION_DENIED"
        assert sb.VM.destroy(db, ref)["ErrorDescription"][0] == "RBAC_PERMISSION_DENIED"
        sb.session.logout(db)
        assert sb.VM.get_all(db)["ErrorDescription"] == ["SESSION_INVALID", db]

    def test_newest_copy_is_latest(self, two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
        """Of two copies of one pool's metadata, only the one with the higher generation is latest."""
        a, b = two_pools
        sa, sb = a.session(), b.session()
        lun = tmp_path / "lun"
        sr = make_sr(sa, lun)
        sa.xenapi.SR.enable_database_replication(sr)
        subprocess.run(["cp", "-a", str(lun), str(tmp_path / "old")], check=True)
        sa.xenapi.VM.create(VM)
        time.sleep(0.1)
        subprocess.run(["cp", "-a", str(lun), str(tmp_path / "new")], check=True)
        host = sb.xenapi.host.get_all()[0]
        sr_uuid = sa.xenapi.SR.get_uuid(sr)
        found = {}
        for name in ("old", "new"):
            # the same SR uuid cannot be introduced twice: give the old copy another identity
            if name == "old":
                import json

                meta = tmp_path / name / ".farside-sr" / "sr.json"
                identity = json.loads(meta.read_text())
                identity["uuid"] = "00000000-0000-4000-8000-000000000001"
                meta.write_text(json.dumps(identity))
            uuid = sr_uuid if name == "new" else "00000000-0000-4000-8000-000000000001"
            sr_b = sb.xenapi.SR.introduce(uuid, name, "", "file", "user", True, {})
            pbd = sb.xenapi.PBD.create({"host": host, "SR": sr_b, "device_config": {"path": str(tmp_path / name)}})
            sb.xenapi.PBD.plug(pbd)
            found[name] = metadata_vdis(sb, sr_b)[0]
        assert sb.xenapi.VDI.get_metadata_latest(found["new"])
        assert not sb.xenapi.VDI.get_metadata_latest(found["old"])

    def test_open_database_errors(self, server: PoolServer, tmp_path: Path) -> None:
        """A VDI that is not a metadata VDI is refused clearly."""
        s = server.session()
        sr = make_sr(s, tmp_path / "lun")
        user = s.xenapi.VDI.create(
            {"SR": sr, "virtual_size": str(1 << 20), "type": "user", "name_label": "d", "sharable": False,
             "read_only": False, "other_config": {}, "sm_config": {}}
        )  # fmt: skip
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VDI.open_database(user)
        assert info.value.details == ["VDI_INCOMPATIBLE_TYPE", user, "user"]
        # A metadata VDI holding no copy: tests/e2e/test_security_metadata.py (users cannot make one).


def test_inspect_command(server: PoolServer, tmp_path: Path) -> None:
    """farside metadata inspect shows the pool, generation and object counts of a metadata VDI."""
    s = server.session()
    sr = make_sr(s, tmp_path / "lun")
    s.xenapi.SR.enable_database_replication(sr)
    s.xenapi.VM.create(VM)
    image = tmp_path / "lun" / s.xenapi.VDI.get_location(metadata_vdis(s, sr)[0])
    out = subprocess.run(
        [sys.executable, "-m", "farside.cli.main", "metadata", "inspect", str(image)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    # Two VMs: the pool's default template and the one made here.
    assert "Site A" in out.stdout and "VM 2" in out.stdout and "no errors" in out.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "farside.cli.main", "metadata", "inspect", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "not a file" in missing.stderr

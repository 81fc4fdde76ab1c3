"""farside backup-metadata / restore-metadata (xe-backup-metadata, xe-restore-metadata) on real servers.

A pool with VMs and a vApp is backed up into its SR's "Pool Metadata Backup" VDI (uuid derived from
the SR's as xapi derives it), generations rotated to --keep; only pool-admin may back up, list or
restore; the old pool goes away, a fresh pool plugs the SR, a dry run changes nothing, and the
restore brings the VMs and the vApp back with their uuids, and a VM boots.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import XenAPI

from farside.backup import generations, tar, xmldb
from farside.model.roles import Role
from farside.replication.schema import REPLICATED

from pools import ADMIN_PASSWORD, MINIMAL_VM, PoolServer, make_pool
from vms import bootable_vm, make_sr, wait_serial

pytestmark = pytest.mark.e2e
NAMESPACE = uuidlib.UUID("e93e0639-2bdb-4a59-8b46-352b3f408c19")


@dataclass
class Site:
    server: PoolServer
    s: XenAPI.Session
    sr: str
    sr_uuid: str
    lun: Path
    password_file: Path
    vms: dict[str, str]  # uuid -> name
    vapp: str  # uuid


def farside(site: Site, server: PoolServer, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FARSIDE_")}
    argv = [sys.executable, "-m", "farside.cli.main", *args[:1], server.url, "--sr", site.sr_uuid,
            "--password-file", str(site.password_file), *args[1:]]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=clean)
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("metabackup")
    make_pool(root / "a", "Site A")
    server = PoolServer(root / "a").start()
    try:
        s = server.session()
        lun = root / "lun"
        sr = make_sr(s, lun)
        web = bootable_vm(server, s, sr, "MBOOT")
        db = bootable_vm(server, s, sr, "MDB")
        diskless = s.xenapi.VM.create({**MINIMAL_VM, "name_label": "diskless"})
        vapp = s.xenapi.VM_appliance.create({"name_label": "shop", "name_description": "web and db"})
        for vm in (web, db):
            s.xenapi.VM.set_appliance(vm, vapp)
        vms = {s.xenapi.VM.get_uuid(v): s.xenapi.VM.get_name_label(v) for v in (web, db, diskless)}
        password_file = root / "password"
        password_file.write_text(ADMIN_PASSWORD + "\n")
        server.add_user("operator", Role.POOL_OPERATOR)
        server.add_user("reader", Role.READ_ONLY)
        uuid = s.xenapi.SR.get_uuid(sr)
        yield Site(server, s, sr, uuid, lun, password_file, vms, s.xenapi.VM_appliance.get_uuid(vapp))
    finally:
        server.stop()


def _generations(site: Site, server: PoolServer) -> list[str]:
    listed = farside(site, server, "restore-metadata", "--list", "--json")
    assert listed.returncode == 0, listed.stderr
    return [g["date"] for g in json.loads(listed.stdout)["generations"]]


def test_backup_makes_the_vdi_and_rotates(site: Site) -> None:
    """The VDI has xapi's uuid, name and other-config; --keep 2 keeps the two newest generations."""
    dates = []
    for _ in range(3):
        made = farside(site, site.server, "backup-metadata", "--keep", "2")
        assert made.returncode == 0, made.stderr
        assert "backed up 3 VMs and 1 vApps as generation" in made.stdout
        dates.append(made.stdout.split("as generation ")[1].split()[0])
    assert len(set(dates)) == 3
    assert _generations(site, site.server) == dates[1:]
    x = site.s.xenapi
    vdi = x.VDI.get_by_uuid(str(uuidlib.uuid5(NAMESPACE, site.sr_uuid)))
    assert x.VDI.get_name_label(vdi) == "Pool Metadata Backup"
    assert x.VDI.get_other_config(vdi)["ctxs-pool-backup"] == "true"
    assert x.VDI.get_SR(vdi) == site.sr
    # No file besides the image is left on the LUN by the rewrites.
    assert not [p for p in site.lun.iterdir() if p.name.startswith(".metadata-backup-")]


def test_only_pool_admin(site: Site) -> None:
    """pool-operator and read-only are refused each of the three handlers, and nothing is written."""
    before = _generations(site, site.server)
    url = site.server.url
    for user in ("operator", "reader"):
        session = site.server.session(user, "pw")
        params = {"session_id": session.handle, "sr_uuid": site.sr_uuid}
        answers = [
            httpx.post(f"{url}/backup_metadata", params=params, timeout=30),
            httpx.get(f"{url}/metadata_backups", params=params, timeout=30),
            httpx.post(f"{url}/restore_metadata", params={**params, "date": before[-1]}, timeout=30),
        ]
        for answer in answers:
            assert answer.status_code == 403 and answer.text.startswith("RBAC_PERMISSION_DENIED"), answer.text
        session.xenapi.session.logout()
    bad = httpx.post(f"{url}/backup_metadata", params={"session_id": site.s.handle, "sr_uuid": "nope"}, timeout=30)
    assert bad.status_code == 404 and bad.text.startswith("UUID_INVALID SR nope")
    assert _generations(site, site.server) == before


def test_a_generation_is_one_moment_of_the_pool(site: Site) -> None:
    """VMs made and destroyed while backups run: in each generation the database dump, the
    manifest, the .vmmeta files and the vApps name the same VMs."""
    x = site.s.xenapi
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            vm = x.VM.create({**MINIMAL_VM, "name_label": "churn"})
            x.VM.destroy(vm)

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(2):
            made = farside(site, site.server, "backup-metadata")
            assert made.returncode == 0, made.stderr
    finally:
        stop.set()
        worker.join()
    (image,) = [p for p in site.lun.iterdir() if p.name.startswith(str(uuidlib.uuid5(NAMESPACE, site.sr_uuid)))]
    with open(image, "rb") as fh:
        for g in generations.index(fh)[-2:]:
            db = g.db()
            assert db is not None
            dump = xmldb.from_xml(generations.read(fh, db), REPLICATED).objects["VM"].values()
            in_dump = {
                r["uuid"]
                for r in dump
                if not (r["is_control_domain"] or r["is_a_snapshot"] or r["is_default_template"])
            }
            manifest = json.loads(generations.read(fh, g.members["manifest.json"]))
            assert in_dump == set(manifest["VMs"]) == set(g.vmmeta())
            assert set(site.vms) <= in_dump
            vapps = json.loads(generations.read(fh, g.members["vapps.json"]))
            assert [(a["uuid"], len(a["VMs"])) for a in vapps] == [(site.vapp, 2)]


def test_a_hostile_backup_vdi_is_refused(site: Site) -> None:
    """A vm-admin may write the (user) backup VDI, as in xapi: what is not a backup is refused by
    list, restore and backup alike, nothing is written anywhere, and destroying the VDI lets the
    next backup make it again."""
    site.server.add_user("vmadmin", Role.VM_ADMIN)
    vmadmin = site.server.session("vmadmin", "pw")
    vdi = site.s.xenapi.VDI.get_by_uuid(str(uuidlib.uuid5(NAMESPACE, site.sr_uuid)))
    hostile = tar.member(generations.MARKER, b"") + tar.member("metadata/2026-01-01-00-00-00/../../../x", b"x")
    params = {"session_id": vmadmin.handle, "vdi": vdi, "format": "raw"}
    put = httpx.put(f"{site.server.url}/import_raw_vdi", params=params, content=hostile + tar.END, timeout=60)
    assert put.status_code == 200, put.text
    files = sorted(site.lun.rglob("*"))
    listed = farside(site, site.server, "restore-metadata", "--list")
    assert listed.returncode != 0 and "INVALID_VALUE metadata backup unexpected file" in listed.stderr
    restored = farside(site, site.server, "restore-metadata", "--date", "2026-01-01-00-00-00")
    assert restored.returncode != 0 and "INVALID_VALUE metadata backup" in restored.stderr
    made = farside(site, site.server, "backup-metadata")
    assert made.returncode != 0 and "INVALID_VALUE metadata backup" in made.stderr
    assert sorted(site.lun.rglob("*")) == files and not (site.lun.parent / "x").exists()
    site.s.xenapi.VDI.destroy(vdi)
    again = farside(site, site.server, "backup-metadata")
    assert again.returncode == 0, again.stderr
    assert len(_generations(site, site.server)) == 1
    vmadmin.xenapi.session.logout()


def _state(s: XenAPI.Session) -> tuple[dict[str, Any], dict[str, Any], set[str]]:
    x = s.xenapi
    vms = {
        r["uuid"]: r
        for r in x.VM.get_all_records().values()
        if not (r["is_control_domain"] or r["is_default_template"])
    }
    apps = {r["uuid"]: r for r in x.VM_appliance.get_all_records().values()}
    return vms, apps, {r["uuid"] for r in x.VDI.get_all_records().values()}


def test_restore_onto_a_fresh_pool(site: Site, tmp_path: Path) -> None:
    """The old pool lets go of its SR and goes; a new pool plugs it; list, dry run (nothing changes),
    -m sr (VMs with a disk on the SR only), then the restore: VMs and vApp back with their uuids."""
    made = farside(site, site.server, "backup-metadata")
    assert made.returncode == 0, made.stderr
    date = made.stdout.split("as generation ")[1].split()[0]
    for pbd in site.s.xenapi.SR.get_PBDs(site.sr):
        site.s.xenapi.PBD.unplug(pbd)
    site.server.stop()

    make_pool(tmp_path / "b", "Site B")
    b = PoolServer(tmp_path / "b").start()
    try:
        sb = b.session()
        x = sb.xenapi
        sr = x.SR.introduce(site.sr_uuid, "LUN", "", "file", "user", True, {})
        x.PBD.plug(x.PBD.create({"host": x.host.get_all()[0], "SR": sr, "device_config": {"path": str(site.lun)}}))
        assert date in _generations(site, b)

        before = _state(sb)
        dry = farside(site, b, "restore-metadata", "--date", date, "--dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert dry.stdout.count(": would restore") == 4  # 3 VMs and the vApp
        assert _state(sb) == before
        by_sr = farside(site, b, "restore-metadata", "--date", date, "--dry-run", "-m", "sr", "--json")
        assert by_sr.returncode == 0
        assert "diskless" not in by_sr.stdout and "MBOOT" in by_sr.stdout
        missing = farside(site, b, "restore-metadata", "--date", "2000-01-01-00-00-00")
        assert missing.returncode != 0 and "INVALID_VALUE date" in missing.stderr

        restored = farside(site, b, "restore-metadata", "--date", date)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        vms, apps, _ = _state(sb)
        assert {u: r["name_label"] for u, r in vms.items()} == site.vms
        assert list(apps) == [site.vapp]
        app = x.VM_appliance.get_by_uuid(site.vapp)
        assert x.VM_appliance.get_name_label(app) == "shop"
        members = {x.VM.get_name_label(v) for v in x.VM_appliance.get_VMs(app)}
        assert members == {"MBOOT", "MDB"}
        web = x.VM.get_by_uuid(next(u for u, n in site.vms.items() if n == "MBOOT"))
        x.VM.start(web, False, False)
        wait_serial(b, sb, web, b"BOOT MBOOT")
        # Exit code = errors. As xapi's script (no --force): a running VM is not replaced, and the
        # halted ones are no older than the generation's copies.
        again = farside(site, b, "restore-metadata", "--date", date)
        assert again.returncode == 3 and "3 errors" in again.stdout, again.stdout
        assert again.stdout.count("VM_TO_IMPORT_IS_NOT_NEWER_VERSION") == 2 and "VM_BAD_POWER_STATE" in again.stdout
        x.VM.hard_shutdown(web)
    finally:
        b.stop()

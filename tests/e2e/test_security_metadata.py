"""Issue 13, points 4 and 5, end to end on real servers: nobody but the replicator writes a metadata
VDI, a forged or malformed one that reaches the DR site (as a mirror would carry it) is never used
and is reported, and a pool that is not paired with the DR site is not recovered from."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import subprocess
import sys
import uuid as uuidlib
import zlib
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import XenAPI

from farside.model.roles import Role
from farside.replication import authenticity
from farside.replication import format as fmt
from farside.storage.lun import Lun

from pools import MINIMAL_VM, PoolServer, make_pool, pool_uuid
from vms import make_sr, shop_site

HALF = 1 << 20
_HEAD = struct.Struct("<4s1s16sQQI")


def farside(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "farside.cli.main", *args], capture_output=True, text=True)


def place_metadata(lun: Path, data: bytes, pool: str) -> str:
    """A metadata VDI on the LUN, image and LUN record, as a mirror carries one another pool made."""
    vdi = str(uuidlib.uuid4())
    (lun / f"{vdi}.raw").write_bytes(data)
    Lun(lun).write_vdi(
        {"uuid": vdi, "name_label": "Metadata for DR", "name_description": "", "type": "metadata",
         "virtual_size": len(data), "location": f"{vdi}.raw", "sharable": False, "read_only": False,
         "sm_config": {"type": "raw"}, "metadata_of_pool": pool, "is_a_snapshot": False, "snapshot_of": "",
         "snapshot_time": "19700101T00:00:00Z"}
    )  # fmt: skip
    return vdi


def image(*halves: bytes) -> bytes:
    return fmt.encode_header(HALF, 0) + b"".join(h.ljust(HALF, b"\0") for h in halves)


def raw_record(key: bytes, pool: str, generation: int, body: bytes) -> bytes:
    """A full copy around any payload bytes with its checksum and MAC right (a buggy writer's)."""
    head = _HEAD.pack(fmt.MAGIC_RECORD, fmt.FULL, fmt.new_epoch(), 0, generation, len(body))
    mac = fmt.record_mac(key, pool, hashlib.sha256(head + body).digest())
    return head + body + mac + fmt.digest(head + body + mac)


def genuine(lun: Path, key: bytes) -> tuple[Path, fmt.Snapshot]:
    """The source pool's own metadata image on the LUN and what it holds."""
    (path,) = [p for p in lun.glob("*.raw") if p.read_bytes()[:16] == fmt.MAGIC_HEADER]
    with open(path, "rb") as fh:
        snapshot, _, _ = fmt.newest(fh, keys=lambda _: key)
    assert snapshot is not None and snapshot.authenticated
    return path, snapshot


def failing_run(s: XenAPI.Session, kind: str, options: dict[str, str]) -> str:
    ref = s.xenapi.DR_run.create(kind, options)
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.DR_run.start(ref)
    assert info.value.details[0] == "DR_RUN_FAILED"
    s.xenapi.DR_run.cleanup(ref)
    return str(info.value.details[2])


def test_users_cannot_make_fill_or_copy_a_metadata_vdi(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path
) -> None:
    """VDI.create(type=metadata) by a vm-admin (and by root), import_raw_vdi into one, resize, clone and
    snapshot of one: OPERATION_NOT_ALLOWED, and the image is left as it was."""
    a, b = two_pools
    a.add_user("vma", Role.VM_ADMIN)
    b.add_user("vma", Role.VM_ADMIN)
    sa = a.session()
    sr = make_sr(sa, tmp_path / "lun")
    sa.xenapi.SR.enable_database_replication(sr)
    vm = sa.xenapi.VM.create(MINIMAL_VM)
    record = {"SR": sr, "virtual_size": str(HALF), "type": "metadata", "name_label": "m", "sharable": False,
              "read_only": False, "other_config": {}, "sm_config": {"type": "raw"}}  # fmt: skip
    for s in (a.session("vma", "pw"), sa):
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VDI.create(record)
        assert info.value.details[0] == "OPERATION_NOT_ALLOWED" and "replicator" in info.value.details[1]
    (own,) = sa.xenapi.pool.get_metadata_VDIs(sa.xenapi.pool.get_all()[0])
    for call in (sa.xenapi.VDI.clone, sa.xenapi.VDI.snapshot):
        with pytest.raises(XenAPI.Failure) as info:
            call(own, {})
        assert info.value.details[0] == "OPERATION_NOT_ALLOWED"
    # Nor may a guest get it as a disk, to write into from inside.
    vbd = {"VM": vm, "VDI": own, "userdevice": "autodetect", "bootable": False, "mode": "RW", "type": "Disk",
           "empty": False, "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}  # fmt: skip
    for s in (a.session("vma", "pw"), sa):
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VBD.create(vbd)
        assert info.value.details == ["VDI_INCOMPATIBLE_TYPE", own, "metadata"]
    assert sa.xenapi.VM.get_VBDs(vm) == []

    # At the DR site, the copy the mirror brought is a foreign metadata VDI nobody may write either.
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    sb = b.session()
    sr_uuid = sa.xenapi.SR.get_uuid(sr)
    task = sb.xenapi.DR_task.create("file", {"path": str(tmp_path / "copy")}, [sr_uuid])
    (foreign,) = [v for v in sb.xenapi.SR.get_VDIs(sb.xenapi.SR.get_by_uuid(sr_uuid)) if
                  sb.xenapi.VDI.get_type(v) == "metadata"]  # fmt: skip
    path = tmp_path / "copy" / sb.xenapi.VDI.get_location(foreign)
    before = path.read_bytes()
    vma = b.session("vma", "pw")
    response = httpx.put(f"{b.url}/import_raw_vdi", params={"session_id": vma.handle, "vdi": foreign, "format": "raw"},
                         content=image(b"forged"), timeout=30)  # fmt: skip
    assert response.status_code == 409 and response.text.startswith("OPERATION_NOT_ALLOWED"), response.text
    for name, args in (("resize", (str(4 * HALF),)), ("clone", ({},)), ("snapshot", ({},))):
        with pytest.raises(XenAPI.Failure) as info:
            getattr(sb.xenapi.VDI, name)(foreign, *args)
        assert info.value.details[0] == "OPERATION_NOT_ALLOWED", name
    assert path.read_bytes() == before
    sb.xenapi.DR_task.destroy(task)


def test_a_forged_metadata_vdi_is_not_chosen_and_is_reported(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path
) -> None:
    """A hand-made image claiming A's uuid at generation 2^62 (renamed VMs) on the LUN copy: the test
    failover at B recovers A's real VMs, reports the forged VDI, and open_database refuses it."""
    a, b = two_pools
    _, tags = shop_site(a, tmp_path / "lun")
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    a_uuid = pool_uuid(a.data_dir)
    _, real = genuine(tmp_path / "copy", authenticity.own_key(a.data_dir))
    objects = json.loads(json.dumps(real.objects))
    for vm in objects["VM"].values():
        vm["name_label"] = "evil " + vm["name_label"]
    payload = {"format": 1, "farside_version": "9", "schema_version": 1, "pool_uuid": a_uuid, "pool_name": "Site A",
               "generation": 2**62, "written": real.written, "objects": objects}  # fmt: skip
    forged_record = fmt.encode_record(fmt.FULL, fmt.new_epoch(), 0, 2**62, payload, key=bytes(32), pool_uuid=a_uuid)
    forged = place_metadata(tmp_path / "copy", image(forged_record), a_uuid)

    sb = b.session()
    ref = sb.xenapi.DR_run.create("test", {"luns": str(tmp_path / "copy")})
    sb.xenapi.DR_run.start(ref)
    names = {sb.xenapi.VM.get_name_label(sb.xenapi.VM.get_by_uuid(u)) for u in tags}
    assert names == set(tags.values())
    vdi = sb.xenapi.VDI.get_by_uuid(forged)
    assert not sb.xenapi.VDI.get_metadata_latest(vdi)
    assert sb.xenapi.VDI.get_sm_config(vdi)[authenticity.STATE_KEY] == authenticity.FORGED
    with pytest.raises(XenAPI.Failure) as info:
        sb.xenapi.VDI.open_database(vdi)
    assert info.value.details[0] == "COULD_NOT_IMPORT_DATABASE" and "fails authentication" in info.value.details[1]
    report = sb.xenapi.DR_run.get_report(ref)
    assert f"metadata VDI {forged} on SR" in report
    assert f"claims pool {a_uuid} generation {2**62} but fails authentication: ignored" in report
    sb.xenapi.DR_run.cleanup(ref)
    assert sb.xenapi.DR_run.get_state(ref) == "cleaned up"


def test_malformed_copies_and_length_bombs_are_skipped_and_named(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path
) -> None:
    """On the LUN copy: A's image gets a newer full copy, checksum and MAC right, whose payload is
    malformed; beside it a metadata VDI holding only such a record, a 4 KiB length bomb and a zlib
    bomb. DR_task.create, SR.scan, VDI.open_database, inspect and a test failover all use the good
    half, name each bad copy, and never answer INTERNAL_ERROR."""
    a, b = two_pools
    _, tags = shop_site(a, tmp_path / "lun")
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    lun, a_uuid, key = tmp_path / "copy", pool_uuid(a.data_dir), authenticity.own_key(a.data_dir)
    path, real = genuine(lun, key)
    objects: dict[str, Any] = json.loads(json.dumps(real.objects))
    next(iter(objects["VM"].values()))["memory_static_max"] = "lots"
    payload = {"format": 1, "farside_version": "9", "schema_version": 1, "pool_uuid": a_uuid, "pool_name": "Site A",
               "generation": real.generation + 5, "written": real.written, "objects": objects}  # fmt: skip
    bad = raw_record(key, a_uuid, real.generation + 5, zlib.compress(orjson.dumps(payload)))
    data = bytearray(path.read_bytes())
    half_size = fmt.read_header(io.BytesIO(bytes(data))).half_size
    other = fmt.half_offset(1 - real.half, half_size)
    data[other : other + len(bad)] = bad
    path.write_bytes(bytes(data))
    only_bad = place_metadata(lun, image(bad), a_uuid)
    head = _HEAD.pack(fmt.MAGIC_RECORD, fmt.FULL, fmt.new_epoch(), 0, 2**62, 2**32 - 1)
    length_bomb = place_metadata(lun, (fmt.encode_header(fmt.MAX_HALF_SIZE, 0) + head).ljust(4096, b"\xff"), a_uuid)
    packer = zlib.compressobj(9)
    inflated = b"".join(packer.compress(bytes(1 << 20)) for _ in range(64)) + packer.flush()
    zlib_bomb = place_metadata(lun, image(raw_record(key, a_uuid, 2**62, inflated)), a_uuid)

    sb = b.session()
    (sr_uuid,) = [r["uuid"] for r in a.session().xenapi.SR.get_all_records().values() if r["type"] == "file"]
    task = sb.xenapi.DR_task.create("file", {"path": str(lun)}, [sr_uuid])
    sr = sb.xenapi.SR.get_by_uuid(sr_uuid)
    sb.xenapi.SR.scan(sr)
    real_vdi = sb.xenapi.VDI.get_by_uuid(path.stem)
    config = sb.xenapi.VDI.get_sm_config(real_vdi)
    assert config[authenticity.STATE_KEY] == authenticity.AUTHENTICATED
    assert (
        config["farside-generation"] == str(real.generation)
        and "malformed payload" in config[authenticity.PROBLEMS_KEY]
    )
    assert sb.xenapi.VDI.get_metadata_latest(real_vdi)
    db = sb.xenapi.VDI.open_database(real_vdi)
    listed = sb.VM.get_all_records(db)  # the database session, through the raw proxy
    assert listed["Status"] == "Success" and set(tags) <= {r["uuid"] for r in listed["Value"].values()}
    for uuid, problem in ((only_bad, "malformed payload"), (zlib_bomb, "inflates past"), (length_bomb, "")):
        vdi = sb.xenapi.VDI.get_by_uuid(uuid)
        assert problem in sb.xenapi.VDI.get_sm_config(vdi)[authenticity.PROBLEMS_KEY], uuid
        assert not sb.xenapi.VDI.get_metadata_latest(vdi)
        with pytest.raises(XenAPI.Failure) as info:
            sb.xenapi.VDI.open_database(vdi)
        assert info.value.details[0] == "COULD_NOT_IMPORT_DATABASE", uuid
    sb.xenapi.DR_task.destroy(task)

    inspect = farside("metadata", "inspect", str(path), "--data-dir", str(b.data_dir))
    assert inspect.returncode == 0, inspect.stderr
    assert "problem:     half" in inspect.stdout and "malformed payload" in inspect.stdout
    assert "authentic:   yes" in inspect.stdout

    ref = sb.xenapi.DR_run.create("test", {"luns": str(lun)})
    sb.xenapi.DR_run.start(ref)
    assert all(sb.xenapi.VM.get_power_state(sb.xenapi.VM.get_by_uuid(u)) == "Paused" for u in tags)
    report = sb.xenapi.DR_run.get_report(ref)
    assert f"metadata VDI {path.stem} on SR" in report and "malformed payload" in report
    for uuid in (only_bad, length_bomb, zlib_bomb):
        assert f"metadata VDI {uuid} on SR" in report and "holds no readable copy" in report
    sb.xenapi.DR_run.cleanup(ref)
    assert "INTERNAL_ERROR" not in (b.data_dir / "server.log").read_text()
    assert "Traceback" not in (b.data_dir / "server.log").read_text()


def test_an_unpaired_pool_is_not_recovered_until_paired(tmp_path: Path) -> None:
    """C never trusted A's key: a test failover refuses, saying how to pair; after the CLI pairing it works."""
    make_pool(tmp_path / "a", "Site A")
    make_pool(tmp_path / "c", "Site C")
    a, c = PoolServer(tmp_path / "a").start(), PoolServer(tmp_path / "c").start()
    try:
        _, tags = shop_site(a, tmp_path / "lun")
        subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
        sc = c.session()
        message = failing_run(sc, "test", {"luns": str(tmp_path / "copy")})
        a_uuid = pool_uuid(a.data_dir)
        assert f"claims pool {a_uuid}" in message and "farside pool dr-key trust" in message, message

        key_file = tmp_path / "a.key"
        exported = farside("pool", "dr-key", "export", str(a.data_dir), "--out", str(key_file))
        assert exported.returncode == 0 and a_uuid in exported.stdout, exported.stderr
        assert key_file.stat().st_mode & 0o077 == 0 and (a.data_dir / "dr-key").stat().st_mode & 0o077 == 0
        bad = farside("pool", "dr-key", "trust", str(c.data_dir), "--pool-uuid", a_uuid, "--key-file", str(a.data_dir))
        assert bad.returncode != 0 and "cannot read --key-file" in bad.stderr and "Traceback" not in bad.stderr
        trusted = farside(
            "pool", "dr-key", "trust", str(c.data_dir), "--pool-uuid", a_uuid, "--key-file", str(key_file)
        )
        assert trusted.returncode == 0, trusted.stderr

        ref = sc.xenapi.DR_run.create("test", {"luns": str(tmp_path / "copy")})
        sc.xenapi.DR_run.start(ref)
        assert all(sc.xenapi.VM.get_power_state(sc.xenapi.VM.get_by_uuid(u)) == "Paused" for u in tags)
        sc.xenapi.DR_run.cleanup(ref)
    finally:
        a.stop()
        c.stop()


def test_a_pool_made_before_dr_keys_gets_one_at_start(tmp_path: Path) -> None:
    """A data directory without dr-key (older Farside): the server makes one, private, at start."""
    make_pool(tmp_path / "old")
    (tmp_path / "old" / "dr-key").unlink()
    server = PoolServer(tmp_path / "old").start()
    try:
        key = tmp_path / "old" / "dr-key"
        assert key.stat().st_mode & 0o777 == 0o600 and len(bytes.fromhex(key.read_text())) == 32
    finally:
        server.stop()

"""ISO SRs and CD drives on a real pool server and real QEMU, through the official SDK.

An ISO library directory under the LUN roots is scanned into read-only VDIs; paths that escape the
roots are refused; a VM boots from an ISO in its CD drive; VBD.insert and VBD.eject give xapi's
errors, and change the disc of a running VM through QEMU (a reboot then boots the new disc).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import XenAPI

from farside.model.roles import Role

from isos import write_boot_iso
from pools import PoolServer, make_pool
from vms import MIB, bootable_vm, make_sr, serial, wait_serial, wait_state

pytestmark = pytest.mark.e2e

MIB16 = str(16 * MIB)
NULL = "OpaqueRef:NULL"


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PoolServer, XenAPI.Session, Path]]:
    base = tmp_path_factory.mktemp("iso")
    make_pool(base / "pool")
    srv = PoolServer(base / "pool").start()
    s = srv.session()
    library = base / "isos"
    library.mkdir()
    write_boot_iso(library / "boot.iso", "from-iso")
    write_boot_iso(library / "second.iso", "second")
    (library / "evil.iso").symlink_to("/etc/passwd")  # a link is never an ISO of the library
    (library / "notes.txt").write_text("not an ISO")
    (library / "dir.iso").mkdir()
    try:
        yield srv, s, library
    finally:
        srv.stop()


def iso_sr(s: XenAPI.Session, library: Path) -> str:
    found = [sr for sr, r in s.xenapi.SR.get_all_records().items() if r["type"] == "iso"]
    if found:
        return str(found[0])
    host = s.xenapi.host.get_all()[0]
    return str(s.xenapi.SR.create(host, {"location": str(library)}, "0", "ISOs", "", "iso", "iso", True, {}))


def iso(s: XenAPI.Session, library: Path, name: str) -> str:
    (vdi,) = [v for v in s.xenapi.SR.get_VDIs(iso_sr(s, library)) if s.xenapi.VDI.get_location(v) == name]
    return str(vdi)


def empty_vm(s: XenAPI.Session, name: str) -> str:
    return str(
        s.xenapi.VM.create(
            {"name_label": name, "memory_static_max": MIB16, "memory_dynamic_max": MIB16,
             "memory_dynamic_min": MIB16, "memory_static_min": MIB16, "VCPUs_max": "1", "VCPUs_at_startup": "1"}
        )
    )  # fmt: skip


def cd_drive(s: XenAPI.Session, vm: str, vdi: str = NULL, device: str = "3") -> str:
    return str(
        s.xenapi.VBD.create(
            {"VM": vm, "VDI": vdi, "userdevice": device, "bootable": True, "mode": "RO", "type": "CD",
             "empty": vdi == NULL, "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}
        )
    )  # fmt: skip


def test_the_library_is_scanned_into_read_only_vdis(pool: tuple[PoolServer, XenAPI.Session, Path]) -> None:
    """Only regular *.iso files become VDIs (no link, no directory); they are read-only, and so is the SR."""
    _, s, library = pool
    sr = iso_sr(s, library)
    record = s.xenapi.SR.get_record(sr)
    assert (record["type"], record["content_type"]) == ("iso", "iso")
    vdis = {s.xenapi.VDI.get_location(v): s.xenapi.VDI.get_record(v) for v in record["VDIs"]}
    assert sorted(vdis) == ["boot.iso", "second.iso"]
    boot = vdis["boot.iso"]
    assert (boot["type"], boot["read_only"], boot["sharable"]) == ("user", True, True)
    assert boot["virtual_size"] == str((library / "boot.iso").stat().st_size)
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.VDI.destroy(iso(s, library, "boot.iso"))
    assert info.value.details == ["SR_OPERATION_NOT_SUPPORTED", sr]
    new = {"SR": sr, "virtual_size": str(MIB), "type": "user", "name_label": "x", "sharable": False,
           "read_only": False, "other_config": {}, "sm_config": {}}  # fmt: skip
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.VDI.create(new)
    assert info.value.details == ["SR_OPERATION_NOT_SUPPORTED", sr]
    assert (library / "boot.iso").exists() and sorted(p.name for p in library.iterdir()) == [
        "boot.iso", "dir.iso", "evil.iso", "notes.txt", "second.iso"]  # fmt: skip
    write_boot_iso(library / "third.iso", "third")
    s.xenapi.SR.scan(sr)
    assert len(s.xenapi.SR.get_VDIs(sr)) == 3
    (library / "third.iso").unlink()
    s.xenapi.SR.scan(sr)
    assert len(s.xenapi.SR.get_VDIs(sr)) == 2


@pytest.mark.parametrize(
    "location",
    ["/etc", "/usr/share", "relative/isos", "{base}/../../etc", "{outside}", "{link}", ""],
    ids=["system", "system-below", "relative", "dotdot", "outside-roots", "symlink", "missing"],
)
def test_a_library_outside_the_roots_is_refused(
    pool: tuple[PoolServer, XenAPI.Session, Path], location: str, tmp_path: Path
) -> None:
    """SR.create and PBD.create refuse an ISO library that is not a plain directory under the roots."""
    _, s, library = pool
    link = library.parent / "link-to-etc"
    if not link.is_symlink():
        link.symlink_to("/etc")
    path = location.format(base=library, outside="/var/lib/farside-not-a-root", link=link)
    host = s.xenapi.host.get_all()[0]
    before = set(s.xenapi.SR.get_all())
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.SR.create(host, {"location": path} if path else {}, "0", "bad", "", "iso", "iso", True, {})
    assert info.value.details[0] in ("INVALID_VALUE", "SR_BACKEND_FAILURE_PATH"), info.value.details
    assert set(s.xenapi.SR.get_all()) == before
    sr = iso_sr(s, library)
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.PBD.create({"host": host, "SR": sr, "device_config": {"location": path}})
    assert info.value.details[0] in ("INVALID_VALUE", "SR_BACKEND_FAILURE_PATH"), info.value.details


def test_a_vm_boots_from_an_iso(pool: tuple[PoolServer, XenAPI.Session, Path]) -> None:
    """A CD drive holding an ISO at start is the VM's boot device."""
    srv, s, library = pool
    vm = empty_vm(s, "iso-boot")
    cd_drive(s, vm, iso(s, library, "boot.iso"))
    s.xenapi.VM.start(vm, False, False)
    try:
        wait_serial(srv, s, vm, b"BOOT from-iso")
    finally:
        s.xenapi.VM.hard_shutdown(vm)
    wait_state(s, vm, "Halted")


def test_insert_and_eject_give_xapis_errors(pool: tuple[PoolServer, XenAPI.Session, Path]) -> None:
    """Only CD drives take discs; a full drive refuses another, an empty one refuses an eject; no
    metadata VDI goes in; a clone's CD holds the same ISO (ISOs are not copied); read-only users
    change nothing."""
    srv, s, library = pool
    sr = make_sr(s, library.parent / "lun")
    vm = bootable_vm(srv, s, sr, "with-cd")
    (disk,) = s.xenapi.VM.get_VBDs(vm)
    cd = cd_drive(s, vm)
    boot = iso(s, library, "boot.iso")
    for call, args, error in (
        ("insert", (disk, boot), "VBD_NOT_REMOVABLE_MEDIA"),
        ("eject", (disk,), "VBD_NOT_REMOVABLE_MEDIA"),
        ("eject", (cd,), "VBD_IS_EMPTY"),
    ):
        with pytest.raises(XenAPI.Failure) as info:
            getattr(s.xenapi.VBD, call)(*args)
        assert info.value.details == [error, args[0]]
    s.xenapi.SR.enable_database_replication(sr)
    [metadata] = [v for v in s.xenapi.SR.get_VDIs(sr) if s.xenapi.VDI.get_type(v) == "metadata"]
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.VBD.insert(cd, metadata)  # the pool's records never go into a guest's drive
    assert info.value.details == ["VDI_INCOMPATIBLE_TYPE", metadata, "metadata"]
    s.xenapi.SR.disable_database_replication(sr)
    s.xenapi.VBD.insert(cd, boot)
    assert (s.xenapi.VBD.get_VDI(cd), s.xenapi.VBD.get_empty(cd)) == (boot, False)
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.VBD.insert(cd, iso(s, library, "second.iso"))
    assert info.value.details == ["VBD_NOT_EMPTY", cd]
    clone = s.xenapi.VM.clone(vm, "clone with cd")
    (clone_cd,) = [v for v in s.xenapi.VM.get_VBDs(clone) if s.xenapi.VBD.get_type(v) == "CD"]
    assert s.xenapi.VBD.get_VDI(clone_cd) == boot
    srv.add_user("cd-reader", Role.READ_ONLY, "pw")
    reader = srv.session("cd-reader", "pw")
    with pytest.raises(XenAPI.Failure) as info:
        reader.xenapi.VBD.eject(cd)
    assert info.value.details[:2] == ["RBAC_PERMISSION_DENIED", "VBD.eject"]
    s.xenapi.VBD.eject(cd)
    assert (s.xenapi.VBD.get_VDI(cd), s.xenapi.VBD.get_empty(cd)) == (NULL, True)


def test_the_disc_of_a_running_vm_changes(pool: tuple[PoolServer, XenAPI.Session, Path]) -> None:
    """A VM started with an empty CD drive gets a disc through QEMU; after a reboot it boots from it;
    the disc is ejected and another put in while it runs, and the next reboot boots that one."""
    srv, s, library = pool
    vm = empty_vm(s, "live-cd")
    cd = cd_drive(s, vm)
    s.xenapi.VM.start(vm, False, False)
    try:
        s.xenapi.VBD.insert(cd, iso(s, library, "boot.iso"))
        s.xenapi.VM.hard_reboot(vm)
        wait_serial(srv, s, vm, b"BOOT from-iso")
        s.xenapi.VBD.eject(cd)
        assert s.xenapi.VBD.get_empty(cd)
        s.xenapi.VBD.insert(cd, iso(s, library, "second.iso"))
        s.xenapi.VM.hard_reboot(vm)
        wait_serial(srv, s, vm, b"BOOT second")
        assert b"BOOT second" not in serial(srv, s, vm).split(b"BOOT from-iso")[0]
        [pbd] = s.xenapi.SR.get_PBDs(iso_sr(s, library))
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.PBD.unplug(pbd)  # the running VM holds one of its ISOs
        assert info.value.details == ["VDI_IN_USE", iso(s, library, "second.iso")]
    finally:
        s.xenapi.VM.hard_shutdown(vm)
    wait_state(s, vm, "Halted")


def test_an_iso_sr_stays_plugged_across_a_restart(pool: tuple[PoolServer, XenAPI.Session, Path]) -> None:
    """A restarted server keeps the ISO SR plugged, without a lease or metadata of its own, and quietly."""
    srv, s, library = pool
    sr = iso_sr(s, library)
    srv.stop()
    log = srv.data_dir / "server.log"
    before = log.stat().st_size
    srv.start()
    s = srv.session()
    assert all(s.xenapi.PBD.get_currently_attached(p) for p in s.xenapi.SR.get_PBDs(sr))
    s.xenapi.SR.scan(sr)
    assert sorted(s.xenapi.VDI.get_location(v) for v in s.xenapi.SR.get_VDIs(sr)) == ["boot.iso", "second.iso"]
    assert sorted(p.name for p in library.iterdir()) == ["boot.iso", "dir.iso", "evil.iso", "notes.txt", "second.iso"]
    assert "Traceback" not in log.read_text()[before:]


def test_a_recovered_vm_keeps_its_cd_drive_empty_where_the_iso_is_missing(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path
) -> None:
    """DR: a VM whose CD holds an ISO of site A's library is recovered on B without force; ISO
    libraries are not mirrored, so its drive comes back empty and its disk is the copy's."""
    a, b = two_pools
    sa, sb = a.session(), b.session()
    lun = tmp_path / "lun-a"
    sr = make_sr(sa, lun)
    sa.xenapi.SR.enable_database_replication(sr)
    library = tmp_path / "isos-a"
    library.mkdir()
    write_boot_iso(library / "boot.iso", "site-a")
    vm = bootable_vm(a, sa, sr, "cd-vm")
    cd_drive(sa, vm, iso(sa, library, "boot.iso"))
    uuid, sr_uuid = sa.xenapi.VM.get_uuid(vm), sa.xenapi.SR.get_uuid(sr)
    copy = tmp_path / "lun-b"
    subprocess.run(["cp", "-a", str(lun), str(copy)], check=True)
    a.stop()
    task = sb.xenapi.DR_task.create("file", {"path": str(copy)}, [sr_uuid])
    [sr_b] = sb.xenapi.DR_task.get_introduced_SRs(task)
    [vdi] = [v for v in sb.xenapi.SR.get_VDIs(sr_b) if sb.xenapi.VDI.get_type(v) == "metadata"]
    db = sb.xenapi.VDI.open_database(vdi)
    try:
        [foreign] = [ref for ref, r in sb.VM.get_all_records(db)["Value"].items() if r["uuid"] == uuid]
        assert sb.VM.recover(db, foreign, sb.handle, False)["Status"] == "Success"
    finally:
        sb.session.logout(db)
    recovered = sb.xenapi.VM.get_by_uuid(uuid)
    drives = {sb.xenapi.VBD.get_type(v): sb.xenapi.VBD.get_record(v) for v in sb.xenapi.VM.get_VBDs(recovered)}
    assert drives["CD"]["empty"] and drives["CD"]["VDI"] == NULL
    assert sb.xenapi.VDI.get_SR(drives["Disk"]["VDI"]) == sr_b

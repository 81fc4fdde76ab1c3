"""Templates, VM.clone, VM.copy and VM.provision on a real pool server, through the official SDK.

One server for the module: the default templates it was made with, an install from "Other install
media" to a VM that boots (as a user scripts it), clone and copy rules, roles, and failures that
must leave nothing behind (an unsafe image half-way through, a full SR).
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pytest
import XenAPI

from farside.api.handlers.vm_clone import INCOMPLETE_KEY as INCOMPLETE
from farside.db import Database
from farside.model.roles import Role

from pools import PoolServer, make_pool
from vms import MIB, bootable_vm, import_bootable, make_sr, wait_serial, wait_state, wait_task

pytestmark = pytest.mark.e2e

MIB16 = str(16 * MIB)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PoolServer, XenAPI.Session, str, Path]]:
    """A running server with one plugged SR, which is the pool's default SR."""
    base = tmp_path_factory.mktemp("templates")
    make_pool(base / "pool")
    srv = PoolServer(base / "pool").start()
    s = srv.session()
    sr = make_sr(s, base / "lun")
    s.xenapi.pool.set_default_SR(s.xenapi.pool.get_all()[0], sr)
    try:
        yield srv, s, sr, base
    finally:
        srv.stop()


def template(s: XenAPI.Session) -> str:
    (ref,) = s.xenapi.VM.get_by_name_label("Other install media")
    return str(ref)


def add_vbd(s: XenAPI.Session, vm: str, vdi: str, device: str, kind: str = "Disk") -> None:
    empty = vdi == "OpaqueRef:NULL"
    s.xenapi.VBD.create(
        {"VM": vm, "VDI": vdi, "userdevice": device, "bootable": device == "0", "mode": "RO" if empty else "RW",
         "type": kind, "empty": empty, "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}
    )  # fmt: skip


def images(lun: Path) -> set[str]:
    return {p.name for p in lun.iterdir() if p.is_file()}


def test_a_new_pool_has_the_default_templates(pool: tuple[PoolServer, XenAPI.Session, str, Path]) -> None:
    """ "Other install media" is a default template with a provision spec; it neither starts nor is destroyed."""
    _, s, _, _ = pool
    record = s.xenapi.VM.get_record(template(s))
    assert record["is_a_template"] and record["is_default_template"]
    assert record["other_config"]["default_template"] == "true"
    assert record["other_config"]["disks"].startswith('<provision><disk device="0" size="34359738368" sr=""')
    assert record["HVM_boot_policy"] == "BIOS order" and record["domid"] == "-1"
    assert '<restriction property="number-of-vbds" max="4"/>' in record["recommendations"]
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.VM.start(template(s), False, False)
    assert info.value.details == ["VM_IS_TEMPLATE", template(s)]
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.VM.destroy(template(s))
    assert info.value.details == ["VM_CANNOT_DELETE_DEFAULT_TEMPLATE", template(s)]
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.VM.provision(template(s))
    assert info.value.details[0] == "OPERATION_NOT_ALLOWED"


def test_install_from_template_boots(pool: tuple[PoolServer, XenAPI.Session, str, Path]) -> None:
    """Clone the template, provision it, write a boot disk into the new disk, start: the guest runs."""
    srv, s, sr, _ = pool
    vm = s.xenapi.VM.clone(template(s), "installed")
    record = s.xenapi.VM.get_record(vm)
    assert record["is_a_template"] and not record["is_default_template"]
    assert record["other_config"]["base_template_name"] == "Other install media"
    assert "default_template" not in record["other_config"] and record["other_config"]["mac_seed"]
    exports = {"export", "metadata_export"}
    assert set(record["allowed_operations"]) == {"clone", "copy", "provision", "destroy", *exports}
    assert set(s.xenapi.VM.get_allowed_operations(template(s))) == {"clone", "copy", *exports}
    s.xenapi.VM.set_memory_limits(vm, MIB16, MIB16, MIB16, MIB16)
    assert s.xenapi.VM.get_allowed_VBD_devices(vm) == ["0", "1", "2", "3"]
    s.xenapi.VM.provision(vm)
    record = s.xenapi.VM.get_record(vm)
    assert not record["is_a_template"] and "disks" not in record["other_config"]
    assert "start" in record["allowed_operations"]
    (vbd,) = record["VBDs"]
    disk = s.xenapi.VBD.get_record(vbd)
    assert (disk["userdevice"], disk["bootable"], disk["type"], disk["other_config"]) == (
        "0",
        True,
        "Disk",
        {"owner": ""},
    )
    vdi = s.xenapi.VDI.get_record(disk["VDI"])
    assert (vdi["SR"], vdi["virtual_size"], vdi["type"]) == (sr, str(32 << 30), "system")
    assert (vdi["name_label"], vdi["name_description"]) == ("0", "Created by template provisioner")
    assert s.xenapi.VM.get_allowed_VBD_devices(vm) == ["1", "2", "3"]
    net = s.xenapi.network.get_all()[0]
    s.xenapi.VIF.create({"device": "0", "network": net, "VM": vm, "MAC": "", "MTU": "1500", "other_config": {}})
    assert s.xenapi.VM.get_allowed_VIF_devices(vm) == ["1", "2", "3", "4", "5", "6"]
    import_bootable(srv, s, disk["VDI"], "from-template")
    s.xenapi.VM.start(vm, False, False)
    try:
        wait_serial(srv, s, vm, b"BOOT from-template")
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VM.clone(vm, "of a running VM")
        assert info.value.details == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    finally:
        s.xenapi.VM.hard_shutdown(vm)
    wait_state(s, vm, "Halted")


def test_clone_and_copy_follow_xapis_rules(pool: tuple[PoolServer, XenAPI.Session, str, Path]) -> None:
    """A clone gets new uuids and MACs and its own disk copies; a copy goes to the SR named; both boot."""
    srv, s, sr, base = pool
    vm = bootable_vm(srv, s, sr, "source")
    s.xenapi.VM.set_order(vm, 3)
    add_vbd(s, vm, "OpaqueRef:NULL", "3", "CD")
    task = s.xenapi.Async.VM.clone(vm, "the clone")
    done = wait_task(s, task)
    assert done["status"] == "success", done["error_info"]
    new = done["result"].removeprefix("<value>").removesuffix("</value>")
    a, b = s.xenapi.VM.get_record(vm), s.xenapi.VM.get_record(new)
    assert b["name_label"] == "the clone" and b["uuid"] != a["uuid"] and not b["is_a_template"]
    assert (b["order"], b["power_state"], b["parent"], b["snapshot_of"]) == (
        "0",
        "Halted",
        "OpaqueRef:NULL",
        "OpaqueRef:NULL",
    )
    (vif_a,), (vif_b,) = a["VIFs"], b["VIFs"]
    assert s.xenapi.VIF.get_MAC(vif_a) != s.xenapi.VIF.get_MAC(vif_b)
    disks = {s.xenapi.VBD.get_userdevice(v): s.xenapi.VBD.get_record(v) for v in b["VBDs"]}
    assert sorted(disks) == ["0", "3"] and disks["3"]["empty"] and disks["3"]["type"] == "CD"
    source_vdi = s.xenapi.VBD.get_VDI(next(v for v in a["VBDs"] if s.xenapi.VBD.get_userdevice(v) == "0"))
    assert disks["0"]["VDI"] != source_vdi and disks["0"]["other_config"]["owner"] == ""
    other = make_sr(s, base / "other-lun", "other")
    copied = s.xenapi.VM.copy(vm, "the copy", other)
    (copy_disk,) = [s.xenapi.VBD.get_VDI(v) for v in s.xenapi.VM.get_VBDs(copied) if s.xenapi.VBD.get_type(v) == "Disk"]
    assert s.xenapi.VDI.get_SR(copy_disk) == other
    s.xenapi.VM.start(copied, False, False)
    try:
        wait_serial(srv, s, copied, b"BOOT source")
    finally:
        s.xenapi.VM.hard_shutdown(copied)
    wait_state(s, copied, "Halted")


def test_roles(pool: tuple[PoolServer, XenAPI.Session, str, Path]) -> None:
    """read-only and vm-operator cannot clone or provision; vm-admin can; nobody destroys a default template."""
    srv, s, _, _ = pool
    for role in (Role.READ_ONLY, Role.VM_OPERATOR, Role.VM_ADMIN):
        srv.add_user(f"t-{role.wire}", role, "pw")
    weak = [srv.session(f"t-{r.wire}", "pw") for r in (Role.READ_ONLY, Role.VM_OPERATOR)]
    admin = srv.session(f"t-{Role.VM_ADMIN.wire}", "pw")
    for session in weak:
        assert session.xenapi.VM.get_allowed_VBD_devices(template(s)) == ["0", "1", "2", "3"]
        for call, args in (("clone", ("x",)), ("copy", ("x", "OpaqueRef:NULL")), ("provision", ())):
            with pytest.raises(XenAPI.Failure) as info:
                getattr(session.xenapi.VM, call)(template(s), *args)
            assert info.value.details[:2] == ["RBAC_PERMISSION_DENIED", f"VM.{call}"]
        with pytest.raises(XenAPI.Failure) as info:
            session.xenapi.VM.set_name_label(template(s), "mine")
        assert info.value.details[0] == "RBAC_PERMISSION_DENIED"
    mine = admin.xenapi.VM.clone(template(s), "vm-admin's")
    with pytest.raises(XenAPI.Failure) as info:
        admin.xenapi.VM.destroy(template(s))
    assert info.value.details[0] == "VM_CANNOT_DELETE_DEFAULT_TEMPLATE"
    admin.xenapi.VM.destroy(mine)


def test_a_clone_failing_half_way_leaves_nothing(pool: tuple[PoolServer, XenAPI.Session, str, Path]) -> None:
    """The second disk's image names a backing file: the clone is refused, and the copy of the
    first disk, the VM, its VBDs and VIFs are all gone."""
    srv, s, sr, base = pool
    vm = bootable_vm(srv, s, sr, "half-way")
    bad = s.xenapi.VDI.create({"SR": sr, "virtual_size": str(MIB), "type": "user", "name_label": "bad",
                               "sharable": False, "read_only": False, "other_config": {}, "sm_config": {}})  # fmt: skip
    add_vbd(s, vm, bad, "1")
    image = base / "lun" / s.xenapi.VDI.get_location(bad)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw", str(image)], check=True
    )
    before = (set(s.xenapi.VM.get_all()), set(s.xenapi.VDI.get_all()), set(s.xenapi.VBD.get_all()),
              set(s.xenapi.VIF.get_all()), images(base / "lun"))  # fmt: skip
    for clone in (lambda: s.xenapi.VM.clone(vm, "never"), lambda: s.xenapi.VM.copy(vm, "never", sr)):
        with pytest.raises(XenAPI.Failure) as info:
            clone()
        assert info.value.details[0].startswith("SR_BACKEND_FAILURE"), info.value.details
        after = (set(s.xenapi.VM.get_all()), set(s.xenapi.VDI.get_all()), set(s.xenapi.VBD.get_all()),
                 set(s.xenapi.VIF.get_all()), images(base / "lun"))  # fmt: skip
        assert after == before
    assert s.xenapi.VM.get_current_operations(vm) == {}


def test_a_full_sr_is_refused_before_copying(pool: tuple[PoolServer, XenAPI.Session, str, Path]) -> None:
    """On an SR whose filesystem cannot hold the copies, clone and copy fail with SR_FULL and make nothing."""
    srv, s, _, base = pool
    small = base / "small-lun"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    try:
        sr = make_sr(s, small, "small")
        vdi = s.xenapi.VDI.create({"SR": sr, "virtual_size": str(MIB), "type": "user", "name_label": "full",
                                   "sharable": False, "read_only": False, "other_config": {},
                                   "sm_config": {"type": "raw"}})  # fmt: skip
        import_bootable(srv, s, vdi, "full")
        vm = s.xenapi.VM.create({"name_label": "full", "memory_static_max": MIB16, "memory_dynamic_max": MIB16,
                                 "memory_dynamic_min": MIB16, "memory_static_min": MIB16, "VCPUs_max": "1",
                                 "VCPUs_at_startup": "1"})  # fmt: skip
        add_vbd(s, vm, vdi, "0")
        filler = small / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k", "status=none"], check=False)
        os.truncate(filler, filler.stat().st_size - (256 << 10))  # 256 KiB left: less than the 1 MiB disk
        before = (set(s.xenapi.VM.get_all()), set(s.xenapi.VDI.get_all()), images(small))
        for clone in (lambda: s.xenapi.VM.clone(vm, "never"), lambda: s.xenapi.VM.copy(vm, "never", sr)):
            with pytest.raises(XenAPI.Failure) as info:
                clone()
            assert info.value.details[0] == "SR_FULL", info.value.details
            assert (set(s.xenapi.VM.get_all()), set(s.xenapi.VDI.get_all()), images(small)) == before
        s.xenapi.VM.destroy(vm)
        s.xenapi.VDI.destroy(vdi)
        s.xenapi.PBD.unplug(s.xenapi.SR.get_PBDs(sr)[0])
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_a_pool_without_the_default_templates_gets_them_at_start(server: PoolServer) -> None:
    """An upgraded pool, made before the templates existed, has them once its server starts again."""
    s = server.session()
    old = template(s)
    server.stop()
    db = Database.open(server.data_dir / "pool.db")
    try:
        with db.write() as tx:
            tx.destroy("VM", old)
    finally:
        db.close()
    server.start()
    s = server.session()
    assert template(s) != old and s.xenapi.VM.get_is_default_template(template(s))
    server.stop()
    server.start()  # and only once
    assert len(server.session().xenapi.VM.get_by_name_label("Other install media")) == 1


@pytest.mark.parametrize("point", ["vm-clone:copied", "vm-copy:copied", "vm-provision:made"])
def test_a_server_killed_half_way_leaves_nothing_after_its_restart(
    point: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL once the disks are made, before the VM is written: the next start removes those
    disks (records and image files), and the same call then succeeds."""
    make_pool(tmp_path / "pool")
    srv = PoolServer(tmp_path / "pool")
    monkeypatch.setenv("FARSIDE_CRASH_AT", point)
    srv.start()
    monkeypatch.delenv("FARSIDE_CRASH_AT")
    try:
        s = srv.session()
        sr = make_sr(s, tmp_path / "lun")
        s.xenapi.pool.set_default_SR(s.xenapi.pool.get_all()[0], sr)
        if point == "vm-provision:made":
            target = s.xenapi.VM.clone(template(s), "to provision")
            again = lambda s: s.xenapi.VM.provision(target)  # noqa: E731
        else:
            target = bootable_vm(srv, s, sr, "killed")
            call = point.split(":")[0].removeprefix("vm-")
            again = lambda s: getattr(s.xenapi.VM, call)(target, "again", *([sr] if call == "copy" else []))  # noqa: E731
        before = (set(s.xenapi.VM.get_all()), set(s.xenapi.VDI.get_all()), set(s.xenapi.VBD.get_all()),
                  images(tmp_path / "lun"))  # fmt: skip
        with pytest.raises((OSError, http.client.HTTPException, xmlrpc.client.ProtocolError)):
            again(s)
        assert srv.process is not None and srv.process.wait(10) == -signal.SIGKILL
        srv.stop()
        srv.start()
        s = srv.session()
        after = (set(s.xenapi.VM.get_all()), set(s.xenapi.VDI.get_all()), set(s.xenapi.VBD.get_all()),
                 images(tmp_path / "lun"))  # fmt: skip
        assert after == before
        again(s)
        assert all(INCOMPLETE not in s.xenapi.VDI.get_other_config(v) for v in s.xenapi.VDI.get_all())
    finally:
        srv.stop()

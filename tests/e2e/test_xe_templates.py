"""``farside xe`` for templates and CDs, as an operator types it: template-list, vm-install,
vm-clone, vm-copy, cd-list, vm-cd-add/insert/eject, with xe's exact output and errors, ending in
a VM installed from "Other install media" that boots from the ISO in its CD drive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from isos import write_boot_iso
from pools import PoolServer, make_pool
from vms import make_sr, wait_serial
from xe_run import block, failed, ok

pytestmark = pytest.mark.e2e

MIB16 = str(16 << 20)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PoolServer, str, str]]:
    """A server with a file SR (the pool's default SR) and an ISO SR holding boot.iso."""
    base = tmp_path_factory.mktemp("xe-templates")
    make_pool(base / "pool")
    srv = PoolServer(base / "pool").start()
    s = srv.session()
    sr = make_sr(s, base / "lun")
    s.xenapi.pool.set_default_SR(s.xenapi.pool.get_all()[0], sr)
    library = base / "isos"
    library.mkdir()
    write_boot_iso(library / "boot.iso", "xe-install")
    iso_sr = ok(
        srv, "sr-create", "name-label=ISOs", "type=iso", "content-type=iso", f"device-config:location={library}"
    )
    try:
        yield srv, s.xenapi.SR.get_uuid(sr), iso_sr.strip()
    finally:
        srv.stop()


def test_template_list(site: tuple[PoolServer, str, str]) -> None:
    """The default template is listed by template-list, never by vm-list."""
    srv, _, _ = site
    [uuid] = ok(srv, "template-list", "--minimal").split()
    assert ok(srv, "template-list") == block(
        ("uuid ( RO)", uuid),
        ("name-label ( RW)", "Other install media"),
        ("name-description ( RW)", "Template which allows VM installation from install media"),
    )
    assert ok(srv, "template-param-get", f"uuid={uuid}", "param-name=is-default-template") == "true\n"
    listed = ok(srv, "vm-list")  # only the host's control domain, as xe lists it
    assert "Control domain on host" in listed and "Other install media" not in listed


def test_install_clone_copy_and_cds(site: tuple[PoolServer, str, str]) -> None:
    """vm-install makes a halted VM with its disk on the SR; clone and copy print new uuids; a CD
    drive gets the ISO, and the installed VM boots from it."""
    srv, sr, iso_sr = site
    web = ok(srv, "vm-install", "template=Other install media", "new-name-label=web", f"sr-uuid={sr}").strip()
    assert ok(srv, "vm-list", f"uuid={web}") == block(
        ("uuid ( RO)", web), ("name-label ( RW)", "web"), ("power-state ( RO)", "halted")
    )
    assert ok(srv, "vm-param-get", f"uuid={web}", "param-name=is-a-template") == "false\n"
    assert ok(srv, "vm-param-get", f"uuid={web}", "param-name=other-config", "param-key=base_template_name") == (
        "Other install media\n"
    )
    [disk] = ok(srv, "vdi-list", f"sr-uuid={sr}", "--minimal").split()
    assert ok(srv, "vdi-list", f"uuid={disk}", "params=name-label,name-description,virtual-size") == block(
        ("name-label ( RW)", "0"),
        ("name-description ( RW)", "Created by template provisioner"),
        ("virtual-size ( RO)", str(32 << 30)),
    )
    assert failed(srv, "vm-install", "template=nope", "new-name-label=x") == ["Error: Template nope not found"]

    [boot] = ok(srv, "cd-list", "--minimal").split()
    assert ok(srv, "cd-list") == block(("uuid ( RO)", boot), ("name-label ( RW)", "boot.iso"))
    assert ok(srv, "cd-list", f"sr-uuid={iso_sr}", "params=read-only,sharable") == block(
        ("sharable ( RO)", "true"), ("read-only ( RO)", "true")
    )
    assert ok(srv, "vm-cd-add", "vm=web", "cd-name=boot.iso", "device=3") == ""
    assert ok(srv, "vm-cd-eject", "vm=web") == ""
    assert failed(srv, "vm-cd-eject", "vm=web") == ["Error: No CDs found"]
    assert failed(srv, "vm-cd-insert", "vm=web", "cd-name=nope") == ["Error: CD nope not found"]
    assert ok(srv, "vm-cd-insert", "vm=web", "cd-name=boot.iso") == ""
    assert failed(srv, "vm-cd-insert", "vm=web", "cd-name=boot.iso") == ["Error: No empty CD devices found"]

    copy = ok(srv, "vm-copy", "vm=web", "new-name-label=web-copy", f"sr-uuid={sr}").strip()
    clone = ok(srv, "vm-clone", f"uuid={web}", "new-name-label=web-clone", "new-name-description=a clone").strip()
    assert ok(srv, "vm-list", f"uuid={clone}", "params=name-label,name-description") == block(
        ("name-label ( RW)", "web-clone"), ("name-description ( RW)", "a clone")
    )
    assert len(ok(srv, "vdi-list", f"sr-uuid={sr}", "--minimal").strip().split(",")) == 3  # each has its own disk
    assert copy not in (web, clone)

    memory = [f"{k}={MIB16}" for k in ("memory-static-min", "memory-dynamic-min", "memory-dynamic-max")]
    ok(srv, "vm-param-set", f"uuid={web}", *memory, f"memory-static-max={MIB16}")
    ok(srv, "vm-start", "vm=web")
    try:
        s = srv.session()
        # The new disk is blank, so the BIOS goes on to the CD drive: the install medium boots.
        wait_serial(srv, s, s.xenapi.VM.get_by_uuid(web), b"BOOT xe-install")
        lines = failed(srv, "vm-clone", "vm=web", "new-name-label=no")
        assert lines[0].startswith("You attempted an operation on a VM that was not in an appropriate power state")
    finally:
        ok(srv, "vm-shutdown", "vm=web", "--force")


def test_install_from_a_template_with_disks_copies_them_to_the_sr(
    site: tuple[PoolServer, str, str], tmp_path: Path
) -> None:
    """A VM made a template (vm-param-set is-a-template=true) installs by a copy onto sr-uuid=."""
    srv, _, _ = site
    assert "vm-install" in ok(None, "help") and "reqd params     : new-name-label" in ok(None, "help", "vm-install")
    base = ok(srv, "vm-clone", "vm=web", "new-name-label=golden").strip()
    ok(srv, "vm-param-set", f"uuid={base}", "is-a-template=true")
    assert base in ok(srv, "template-list", "--minimal")
    s = srv.session()
    other = s.xenapi.SR.get_uuid(make_sr(s, tmp_path / "other"))
    new = ok(srv, "vm-install", "template=golden", "new-name-label=from-golden", f"sr-uuid={other}").strip()
    vbds = s.xenapi.VM.get_VBDs(s.xenapi.VM.get_by_uuid(new))
    disks = [s.xenapi.VBD.get_VDI(v) for v in vbds if s.xenapi.VBD.get_type(v) == "Disk"]
    assert [s.xenapi.SR.get_uuid(s.xenapi.VDI.get_SR(d)) for d in disks] == [other]
    assert ok(srv, "vm-param-get", f"uuid={new}", "param-name=is-a-template") == "false\n"

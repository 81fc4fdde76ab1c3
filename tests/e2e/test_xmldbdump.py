"""GET and PUT /pool/xmldbdump and xe's pool-dump-database / pool-restore-database, on a real server.

A dump taken, the pool changed, the dump restored: the change is undone, objects come back with
their refs and uuids, without a restart. A dump that was altered, is another pool's or another
version's, or is no dump at all is refused and changes nothing; only pool-admin may dump or
restore; a VM that runs and is not in the dump blocks the restore.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import XenAPI

from e2e.test_xe import failed, ok
from farside.model.roles import Role

from pools import MINIMAL_VM, PoolServer, make_pool
from vms import bootable_vm, make_sr, wait_state, wait_task

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PoolServer, XenAPI.Session, Path]]:
    root = tmp_path_factory.mktemp("dbdump")
    make_pool(root / "pool")
    server = PoolServer(root / "pool").start()
    try:
        server.add_user("operator", Role.POOL_OPERATOR)
        yield server, server.session(), root
    finally:
        server.stop()


def get(server: PoolServer, s: XenAPI.Session) -> bytes:
    response = httpx.get(f"{server.url}/pool/xmldbdump", params={"session_id": s.handle}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    return response.content


def put(server: PoolServer, handle: str, data: bytes, dry_run: bool = False) -> httpx.Response:
    params = {"session_id": handle, "dry_run": str(dry_run).lower()}
    return httpx.put(f"{server.url}/pool/xmldbdump", params=params, content=data, timeout=60)


def state(s: XenAPI.Session) -> dict[str, object]:
    pool = s.xenapi.pool.get_all()[0]
    return {
        "pool": s.xenapi.pool.get_name_label(pool),
        "vms": sorted((r["uuid"], r["name_label"]) for r in s.xenapi.VM.get_all_records().values()),
        "networks": sorted(r["name_label"] for r in s.xenapi.network.get_all_records().values()),
    }


def test_restore_undoes_the_changes_since_the_dump(site: tuple[PoolServer, XenAPI.Session, Path]) -> None:
    """Renamed, created and destroyed objects are as they were in the dump, refs and uuids kept;
    a dry run only counts; this host keeps its identity."""
    server, s, _ = site
    kept = s.xenapi.VM.create({**MINIMAL_VM, "name_label": "kept"})
    doomed = s.xenapi.VM.create({**MINIMAL_VM, "name_label": "doomed"})
    host = s.xenapi.host.get_all()[0]
    host_uuid = s.xenapi.host.get_uuid(host)
    before = state(s)
    data = get(server, s)
    text = data.decode()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<database>\n<manifest>')
    assert f'<row ref="{kept}" ' in text and 'name_label="kept"' in text
    assert "argon2" not in text and '<table name="user">' not in text and '<table name="session">' not in text
    unchanged = put(server, s.handle, data, dry_run=True)
    assert unchanged.text == "dry run: would be 0 objects added, 0 changed, 0 removed\n"

    pool = s.xenapi.pool.get_all()[0]
    s.xenapi.pool.set_name_label(pool, "renamed")
    s.xenapi.VM.set_name_label(kept, "kept, renamed")
    s.xenapi.VM.destroy(doomed)
    s.xenapi.VM.create({**MINIMAL_VM, "name_label": "newcomer"})
    changed = state(s)

    dry = put(server, s.handle, data, dry_run=True)
    assert dry.status_code == 200, dry.text
    assert dry.text.startswith("dry run: would be ") and "removed" in dry.text
    assert state(s) == changed

    done = put(server, s.handle, data)
    assert done.status_code == 200, done.text
    assert state(s) == before
    assert s.xenapi.VM.get_name_label(doomed) == "doomed"  # the same ref again
    assert s.xenapi.host.get_all() == [host] and s.xenapi.host.get_uuid(host) == host_uuid
    assert s.xenapi.VM.get_allowed_operations(doomed)  # live bookkeeping, reloaded without a restart
    s.xenapi.VM.destroy(kept)
    s.xenapi.VM.destroy(doomed)


def test_altered_foreign_and_other_dumps_are_refused(
    site: tuple[PoolServer, XenAPI.Session, Path], tmp_path: Path
) -> None:
    """Every refusal is a XenAPI failure as text with a 4xx status, and changes nothing."""
    server, s, _ = site
    data = get(server, s)
    before = state(s)
    tampered = data.replace(b'name_label="Site A"', b'name_label="Site B"', 1)
    assert tampered != data
    cases = {
        "OPERATION_NOT_ALLOWED The dump is not authentic": tampered,
        "RESTORE_INCOMPATIBLE_VERSION": data.replace(b'"schema_major_vsn" value="1"', b'"schema_major_vsn" value="5"'),
        "INVALID_VALUE database dump": b"<database><manifest></manifest><table name='VM'>",
        "INVALID_VALUE database dump a dump holds no DTD": b'<!DOCTYPE d [<!ENTITY a "b">]><database/>',
    }  # fmt: skip
    make_pool(tmp_path / "other", "Site B")
    other = PoolServer(tmp_path / "other").start()
    try:
        cases["OPERATION_NOT_ALLOWED The dump is of pool"] = get(other, other.session())
    finally:
        other.stop()
    for expected, body in cases.items():
        answer = put(server, s.handle, body)
        assert answer.status_code in (400, 409), (expected, answer.status_code)
        assert answer.text.startswith(expected), (expected, answer.text)
        assert state(s) == before
    chunked = httpx.put(
        f"{server.url}/pool/xmldbdump", params={"session_id": s.handle}, content=iter([data]), timeout=60
    )
    assert chunked.status_code == 400 and "Content-Length" in chunked.text


def test_only_pool_admin_dumps_or_restores(site: tuple[PoolServer, XenAPI.Session, Path]) -> None:
    server, s, _ = site
    operator = server.session("operator", "pw")
    data = get(server, s)
    refused = httpx.get(f"{server.url}/pool/xmldbdump", params={"session_id": operator.handle}, timeout=30)
    assert refused.status_code == 403 and refused.text.startswith("RBAC_PERMISSION_DENIED")
    assert put(server, operator.handle, data).status_code == 403
    assert put(server, "OpaqueRef:nobody", data).status_code == 401
    assert httpx.get(f"{server.url}/pool/xmldbdump", timeout=30).status_code == 401


def test_running_state_wins_over_the_dump(site: tuple[PoolServer, XenAPI.Session, Path]) -> None:
    """A VM in an operation blocks a restore; a running VM the dump has halted runs on (same domid);
    a running VM the dump lacks blocks it instead of being stopped."""
    server, s, root = site
    sr = make_sr(s, root / "lun")
    without_vm = get(server, s)
    vm = bootable_vm(server, s, sr, "runner")
    with_vm = get(server, s)
    s.xenapi.VM.set_start_delay(vm, 30)
    task = s.xenapi.Async.VM.start(vm, False, False)
    wait_state(s, vm, "Running")  # and sleeping its start_delay, still claimed by the start
    assert list(s.xenapi.VM.get_current_operations(vm).values()) == ["start"]
    answer = put(server, s.handle, with_vm)
    assert answer.status_code == 409 and answer.text == f"OTHER_OPERATION_IN_PROGRESS VM {vm}\n"
    s.xenapi.VM.hard_shutdown(vm)  # ends the delay, then stops the VM
    assert wait_task(s, task, 30)["status"] == "success"
    wait_state(s, vm, "Halted")
    s.xenapi.VM.set_start_delay(vm, 0)
    s.xenapi.VM.start(vm, False, False)
    try:
        domid = s.xenapi.VM.get_domid(vm)
        s.xenapi.VM.set_name_label(vm, "renamed while running")
        assert put(server, s.handle, with_vm).status_code == 200
        record = s.xenapi.VM.get_record(vm)
        assert record["power_state"] == "Running" and record["domid"] == domid
        assert record["name_label"] == "runner"  # the dump's
        assert "clean_shutdown" in record["allowed_operations"]
        answer = put(server, s.handle, without_vm)
        assert answer.status_code == 409 and "is not halted and is not in the dump" in answer.text
        assert s.xenapi.VM.get_power_state(vm) == "Running"
    finally:
        s.xenapi.VM.hard_shutdown(vm)
    assert put(server, s.handle, without_vm).status_code == 200
    assert vm not in s.xenapi.VM.get_all()


def test_xe_pool_dump_and_restore_database(site: tuple[PoolServer, XenAPI.Session, Path], tmp_path: Path) -> None:
    """xe writes the dump to file-name=; a restore needs --force unless it is a dry run."""
    server, s, _ = site
    dump = tmp_path / "pool.db.xml"
    assert ok(server, "pool-dump-database", f"file-name={dump}") == ""
    assert dump.read_bytes().startswith(b'<?xml version="1.0"')
    vm = s.xenapi.VM.create({**MINIMAL_VM, "name_label": "after the dump"})
    assert failed(server, "pool-restore-database", f"file-name={dump}") == [
        "This operation is dangerous and may cause data loss. This operation must be forced (use --force)."
    ]
    assert ok(server, "pool-restore-database", f"file-name={dump}", "dry-run=true").startswith("dry run: would be")
    assert vm in s.xenapi.VM.get_all()
    assert ok(server, "pool-restore-database", f"file-name={dump}", "--force").startswith("restored: ")
    assert vm not in s.xenapi.VM.get_all()
    dump.write_bytes(dump.read_bytes().replace(b"OpaqueRef:", b"OpaqueRef:x", 1))
    lines = failed(server, "pool-restore-database", f"file-name={dump}", "--force")
    assert lines[0] == "You attempted an operation that was not allowed."

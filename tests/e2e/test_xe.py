"""``farside xe`` as an operator runs it: the real command against real pool servers, xe's output
and errors checked line by line, every command at least once, DR recovery onto a second site."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from pools import ADMIN_PASSWORD, PoolServer, make_pool
from vms import bootable_vm, shop_site
from xe_run import block, failed, ok, xe


def test_storage_vms_and_vapps(server: PoolServer, tmp_path: Path) -> None:
    """SR, PBD, VDI, VM and vApp commands on one pool, with xe's exact output."""
    lun = tmp_path / "lun"
    lun.mkdir()
    sr = ok(server, "sr-create", "name-label=LUN A", "type=file", f"device-config:path={lun}", "shared=true").strip()
    assert ok(server, "sr-list", f"uuid={sr}") == block(
        ("uuid ( RO)", sr),
        ("name-label ( RW)", "LUN A"),
        ("name-description ( RW)", ""),
        ("host ( RO)", _host_name(server)),
        ("type ( RO)", "file"),
        ("content-type ( RO)", ""),
    )
    assert f"<UUID>{sr}</UUID>" in ok(server, "sr-probe", "type=file", f"device-config:path={lun}")
    [pbd] = ok(server, "pbd-list", f"sr-uuid={sr}", "--minimal").strip().split(",")
    assert ok(server, "pbd-list", f"uuid={pbd}", "params=device-config,currently-attached") == block(
        ("device-config (MRO)", f"path: {lun}"), ("currently-attached ( RO)", "true")
    )

    s = server.session()
    sr_ref = s.xenapi.SR.get_by_uuid(sr)
    web, db = (s.xenapi.VM.get_uuid(bootable_vm(server, s, sr_ref, tag)) for tag in ("web", "db"))
    assert ok(server, "vm-list", f"uuid={web}") == block(
        ("uuid ( RO)", web), ("name-label ( RW)", "web"), ("power-state ( RO)", "halted")
    )
    dom0 = s.xenapi.VM.get_uuid(s.xenapi.host.get_control_domain(s.xenapi.host.get_all()[0]))
    # As xe: vm-list shows the host's control domain too.
    assert sorted(ok(server, "vm-list", "--minimal").strip().split(",")) == sorted([web, db, dom0])
    assert ok(server, "vm-list", "name-label=db", "params=power-state,name-label") == block(
        ("name-label ( RW)", "db"), ("power-state ( RO)", "halted")
    )
    ok(server, "vm-param-set", f"uuid={db}", "name-description=the, database", "other-config:tier=back")
    assert ok(server, "vm-param-get", f"uuid={db}", "param-name=name-description") == "the, database\n"
    assert ok(server, "vm-param-get", f"uuid={db}", "param-name=other-config", "param-key=tier") == "back\n"
    assert (
        ok(server, "vm-list", "other-config:tier=back", "params=name-description", "--minimal") == "the\\, database\n"
    )
    assert failed(server, "vm-param-set", f"uuid={db}", "power-state=running") == [
        "Error: Field 'power-state' is read-only."
    ]

    assert failed(server, "vm-start", "power-state=halted") == [
        "Error: Multiple matches VMs found. --multiple required to complete the operation"
    ]
    ok(server, "vm-start", "vm=web")
    assert _serial(server, "vm=web", b"BOOT web")
    assert failed(server, "vm-start", f"uuid={web}") == [
        "You attempted an operation on a VM that was not in an appropriate power state at the time; for example, "
        "you attempted to start a VM that was already running. The parameters returned are the VM's handle, and "
        "the expected and actual VM state at the time of the call.",
        f"vm: {web}",
        "expected: halted",
        "actual: running",
    ]
    ok(server, "vm-shutdown", "vm=web", "--force")
    assert ok(server, "vm-param-get", f"uuid={web}", "param-name=power-state") == "halted\n"
    assert failed(server, "vm-shutdown", "vm=nothing-by-this-name") == ["Error: No matching VMs found"]

    app = ok(server, "appliance-create", "name-label=shop", "name-description=both").strip()
    for order, vm in enumerate((db, web)):
        ok(server, "vm-param-set", f"uuid={vm}", f"appliance={app}", f"order={order}")
    listed = ok(server, "appliance-list", f"uuid={app}")
    assert listed.startswith(f"uuid ( RO)                  : {app}\n") and "VMs (SRO): " in listed
    assert ok(server, "appliance-list", "name-label=shop", "params=name-description") == block(
        ("name-description ( RW)", "both")
    )
    ok(server, "appliance-start", f"uuid={app}")
    assert ok(server, "vm-list", f"appliance={app}", "params=power-state", "--minimal") == "running,running\n"
    # With --multiple, each VM is tried and each failure reported.
    both = failed(server, "vm-start", f"appliance={app}", "--multiple")
    assert sorted(line for line in both if line.startswith("operation failed on ")) == sorted(
        f"operation failed on {vm}: You attempted an operation on a VM that was not in an appropriate power "
        "state at the time; for example, you attempted to start a VM that was already running. The parameters "
        "returned are the VM's handle, and the expected and actual VM state at the time of the call."
        for vm in (web, db)
    )
    assert failed(server, "vm-destroy", f"uuid={web}")[-2:] == ["expected: halted", "actual: running"]
    ok(server, "appliance-shutdown", f"uuid={app}", "--force")
    assert ok(server, "vm-list", f"appliance={app}", "params=power-state", "--minimal") == "halted,halted\n"
    ok(server, "appliance-destroy", f"uuid={app}")
    assert ok(server, "appliance-list", "--minimal") == "\n"

    ok(server, "sr-enable-database-replication", f"uuid={sr}")
    params = "params=uuid,sr-uuid,name-label,metadata-of-pool,metadata-latest"
    metadata = ok(server, "vdi-list", "type=Metadata", params)
    [vdi] = ok(server, "vdi-list", "type=Metadata", "--minimal").split()
    pool_uuid = s.xenapi.pool.get_uuid(s.xenapi.pool.get_all()[0])
    assert metadata == block(
        ("uuid ( RO)", vdi),
        ("name-label ( RW)", "Metadata for DR"),
        ("sr-uuid ( RO)", sr),
        ("metadata-latest ( RO)", "true"),
        ("metadata-of-pool ( RO)", pool_uuid),
    )
    ok(server, "sr-disable-database-replication", f"uuid={sr}")
    assert ok(server, "vdi-list", "type=Metadata", "--minimal") == "\n"

    for vm in (web, db):
        ok(server, "vm-destroy", f"uuid={vm}")
    assert ok(server, "vm-list", "--minimal") == f"{dom0}\n"
    assert failed(server, "vm-destroy", f"uuid={web}")[0] == "The uuid you supplied was invalid."
    ok(server, "pbd-unplug", f"uuid={pbd}")
    assert ok(server, "pbd-list", f"uuid={pbd}", "params=currently-attached", "--minimal") == "false\n"
    ok(server, "pbd-plug", f"uuid={pbd}")
    assert ok(server, "pbd-list", f"uuid={pbd}", "params=currently-attached", "--minimal") == "true\n"
    ok(server, "pbd-unplug", f"uuid={pbd}")
    ok(server, "sr-forget", f"uuid={sr}")
    assert ok(server, "sr-list", f"uuid={sr}") == ""


def _host_name(server: PoolServer) -> str:
    s = server.session()
    return str(s.xenapi.host.get_name_label(s.xenapi.host.get_all()[0]))


def _serial(server: PoolServer, selector: str, text: bytes, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        argv = [sys.executable, "-m", "farside.cli.main", "xe", "-s", server.url, "-pw", ADMIN_PASSWORD]
        out = subprocess.run([*argv, "vm-serial", selector], capture_output=True, timeout=60, check=True).stdout
        if text in out:
            return True
        time.sleep(0.2)
    return False


def test_failover_with_xe(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    """xe's DR sequence at site B on a copy of A's LUN: drtask-create, vdi-list type=Metadata,
    assert-can-be-recovered, vm-recover and appliance-recover, drtask-destroy."""
    a, b = two_pools
    sa, tags = shop_site(a, tmp_path / "lun")
    uuids = {tag: uuid for uuid, tag in tags.items()}
    sr = sa.xenapi.SR.get_uuid(sa.xenapi.SR.get_all()[0])
    [app] = [sa.xenapi.VM_appliance.get_uuid(r) for r in sa.xenapi.VM_appliance.get_all()]
    pool_a = sa.xenapi.pool.get_uuid(sa.xenapi.pool.get_all()[0])
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    a.stop()

    task = ok(b, "drtask-create", "type=file", f"device-config:path={tmp_path / 'copy'}", f"sr-whitelist={sr}").strip()
    assert ok(b, "drtask-list", f"uuid={task}") == block(("uuid ( RO)", task), ("introduced-SRs ( RO)", sr))
    assert ok(b, "sr-list", f"uuid={sr}", "params=introduced-by", "--minimal") == f"{task}\n"
    found = ok(b, "vdi-list", "type=Metadata", "params=uuid,sr-uuid,name-label,metadata-of-pool,metadata-latest")
    [vdi] = ok(b, "vdi-list", "type=Metadata", f"sr-uuid={sr}", "--minimal").split()
    assert found == block(
        ("uuid ( RO)", vdi),
        ("name-label ( RW)", "Metadata for DR"),
        ("sr-uuid ( RO)", sr),
        ("metadata-latest ( RO)", "true"),
        ("metadata-of-pool ( RO)", pool_a),
    )
    database = f"database:vdi-uuid={vdi}"
    # The foreign database lists A's VMs and vApps.
    assert ok(b, "vm-list", database, "params=name-label", "--minimal").strip().split(",").count("lone") == 1

    ok(b, "vm-assert-can-be-recovered", f"uuid={uuids['lone']}", database)
    ok(b, "vm-recover", f"uuid={uuids['lone']}", database, "force=true")
    assert failed(b, "vm-recover", f"uuid={uuids['lone']}", database)[0] == (
        "The VM cannot be imported unforced because it is either the same version or an older version of an "
        "existing VM."
    )
    member = failed(b, "vm-recover", f"uuid={uuids['shop-db']}", database)
    assert member[0] == "This operation is not allowed as the VM is part of an appliance."
    assert [line.split(":")[0] for line in member[1:]] == ["vm", "appliance"]
    ok(b, "appliance-assert-can-be-recovered", f"uuid={app}", database)
    ok(b, "appliance-recover", f"uuid={app}", database, "force=true")
    assert sorted(ok(b, "vm-list", "is-control-domain=false", "--minimal").strip().split(",")) == sorted(tags)
    assert (
        ok(b, "vm-list", f"appliance={app}", "params=name-label", "--minimal").strip().split(",").count("shop-db") == 1
    )
    # Every database session the commands opened was logged out again.
    assert _database_sessions(b) == 0

    ok(b, "drtask-destroy", f"uuid={task}")
    assert ok(b, "drtask-list", "--minimal") == "\n"
    assert ok(b, "sr-list", f"uuid={sr}", "--minimal") == f"{sr}\n", "the SR the recovered VMs use stays"
    assert failed(b, "vm-recover", f"uuid={uuids['lone']}") == [
        "Error: A parameter of the form 'database:vdi-uuid=<uuid>' must be specified to run this command."
    ]


def _database_sessions(server: PoolServer) -> int:
    """Sessions from VDI.open_database still open, read from the pool's database (no XenAPI call lists sessions)."""
    from farside.db import Database

    db = Database.open(server.data_dir / "pool.db")
    try:
        with db.read() as tx:
            return sum(1 for r in tx.get_records("session").values() if "farside-database" in r["other_config"])
    finally:
        db.close()


def test_bad_input(server: PoolServer, tmp_path: Path) -> None:
    """Unknown commands and parameters, missing ones, bad uuids, bad passwords, no server: a message and exit 1."""
    hint = "For usage run: 'farside xe help'"
    assert failed(server, "vm-frobnicate") == ["Unknown command: vm-frobnicate", hint]
    assert failed(server, "sr-forget") == ["Required parameter not found: uuid", hint]
    for whitelist in ((), ("sr-whitelist=",)):
        refused = failed(server, "drtask-create", "type=file", "device-config:path=/x", *whitelist)
        assert refused[0].startswith("drtask-create needs sr-whitelist=UUID,...") and "sr-probe" in refused[0]
    assert ok(server, "drtask-list", "--minimal") == "\n"  # nothing was made
    assert failed(server, "drtask-destroy", "uuid=1", "colour=red") == [
        "Unknown parameter 'colour' for drtask-destroy (it takes: uuid)",
        hint,
    ]
    assert failed(server, "vm-list", "-x") == ["Unknown switch: -x", hint]
    assert failed(server, "vm-param-get", "uuid=not-a-uuid", "param-name=name-label") == [
        "The uuid you supplied was invalid.",
        "type: VM",
        "uuid: not-a-uuid",
    ]
    assert failed(server, "vm-list", "params=uuid,colour") == [
        "Error: Unknown field 'colour' for vm (see vm-list params=all)"
    ]
    assert failed(server, "sr-create", "name-label=x", "type=nfs", "device-config:path=/nowhere") == [
        "The SR could not be connected because the driver was not recognised.",
        "driver: nfs",
    ]
    wrong = failed(None, "-s", server.url, "-u", "root", "-pw", "wrong", "vm-list")
    assert wrong[0] == f"Authentication failed for user 'root' at {server.url}"
    gone = failed(None, "-s", "127.0.0.1", "-p", "1", "-pw", "x", "vm-list")
    assert gone == [
        "Unable to contact server at http://127.0.0.1:1 (Connection refused). Please check server and port settings."
    ]
    assert failed(None, "-s", server.url, "vm-list")[0].startswith("Username/password must be specified")
    assert failed(None, "-p", "99999", "-pw", "x", "vm-list") == ["Port number must be an integer (0-65535)", hint]
    assert xe(None).returncode == 1 and "Usage:" in xe(None).stderr
    assert "vm-recover" in ok(None, "help")
    assert "reqd params     : uuid" in ok(None, "help", "vm-recover")


def test_settings_from_environment_and_files(server: PoolServer, tmp_path: Path) -> None:
    """The server and credentials can come from FARSIDE_* variables, -pwf, or a settings file."""
    expected = ok(server, "vm-list", "--minimal")
    env = {"FARSIDE_SERVER": server.url, "FARSIDE_USER": "root", "FARSIDE_PASSWORD": ADMIN_PASSWORD}
    assert ok(None, "vm-list", "--minimal", env=env) == expected
    secret = tmp_path / "pw"
    secret.write_text(f"root\n{ADMIN_PASSWORD}\n")
    assert ok(None, "-s", server.url, "-pwf", str(secret), "vm-list", "--minimal") == expected
    home = tmp_path / "home"
    (home / ".farside").mkdir(parents=True)
    (home / ".farside" / "xe.conf").write_text(f"# site A\nserver=127.0.0.1\nport={server.port}\nusername=root\n"
                                              f"passwordfile={secret}\n")  # fmt: skip
    assert ok(None, "vm-list", "--minimal", home=home) == expected
    other = tmp_path / "other.conf"
    other.write_text("colour=red\n")
    assert failed(None, "--config", str(other), "vm-list")[0].startswith(f"Error parsing config file '{other}' line 1")


@pytest.fixture
def tls_server(tmp_path: Path) -> PoolServer:
    make_pool(tmp_path / "tls-pool")
    srv = PoolServer(tmp_path / "tls-pool", tls=True).start()
    yield srv  # type: ignore[misc]
    srv.stop()


def test_tls(tls_server: PoolServer) -> None:
    """An HTTPS server's self-signed certificate is refused unless --no-verify or FARSIDE_NO_VERIFY says so."""
    refused = failed(tls_server, "vm-list")
    assert refused[0].startswith(f"The certificate of {tls_server.url} could not be verified")
    assert "--no-verify" in refused[1]
    assert ok(tls_server, "--no-verify", "appliance-list") == ""
    assert ok(tls_server, "appliance-list", env={"FARSIDE_NO_VERIFY": "1"}) == ""
    host_only = tls_server.url.removeprefix("https://")
    assert (
        ok(None, "-s", host_only, "--tls", "--no-verify", "-pw", ADMIN_PASSWORD, "appliance-list", "--minimal") == "\n"
    )
    plain = failed(None, "-s", host_only, "-pw", ADMIN_PASSWORD, "vm-list")
    assert plain[0].startswith(f"Unable to contact server at http://{host_only}")

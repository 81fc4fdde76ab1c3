"""VM consoles over the pool's own URL: a raw RFB handshake through ``CONNECT /console`` to a real
QEMU VM's VNC server, the role check, the serial console's location, and evacuation's answer."""

from __future__ import annotations

import os
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import XenAPI

from farside.model.roles import Role
from farside.model.types import NULL_REF

from pools import PoolServer
from vms import bootable_vm, make_sr, qemu_pids, wait_serial


@pytest.fixture(scope="module")
def running(
    shared_server: PoolServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[XenAPI.Session, str]]:
    s = shared_server.session()
    sr = make_sr(s, tmp_path_factory.mktemp("consoles") / "lun")
    vm = bootable_vm(shared_server, s, sr, "console")
    s.xenapi.VM.start(vm, False, False)
    wait_serial(shared_server, s, vm, b"BOOT console")
    try:
        yield s, vm
    finally:
        s.xenapi.VM.hard_shutdown(vm)


def connect(server: PoolServer, location: str, session: str) -> socket.socket:
    """``CONNECT`` the location's path and query (with the session), as XenCenter does."""
    parts = urllib.parse.urlsplit(location)
    conn = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=20)
    conn.sendall(f"CONNECT {parts.path}?{parts.query}&session_id={session} HTTP/1.0\r\n\r\n".encode())
    return conn


def read_head(conn: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(1)
        assert chunk, head
        head += chunk
    return head


def consoles(s: XenAPI.Session, vm: str) -> dict[str, dict[str, str]]:
    return {r["protocol"]: r for r in (s.xenapi.console.get_record(c) for c in s.xenapi.VM.get_consoles(vm))}


def test_rfb_handshake_through_the_pool(shared_server: PoolServer, running: tuple[XenAPI.Session, str]) -> None:
    """The rfb console's location, CONNECTed with a session, speaks RFB from QEMU's VNC server."""
    s, vm = running
    found = consoles(s, vm)
    assert set(found) == {"rfb", "vt100"}
    rfb = found["rfb"]
    assert rfb["VM"] == vm and rfb["location"].startswith(shared_server.url + "/console?ref=OpaqueRef:")
    with connect(shared_server, rfb["location"], s.handle) as conn:
        assert read_head(conn).startswith(b"HTTP/1.1 200 OK\r\n")
        assert conn.recv(12) == b"RFB 003.008\n"
        conn.sendall(b"RFB 003.008\n")
        assert conn.recv(2) == b"\x01\x01"  # one security type: None (the pool checked the session)
        conn.sendall(b"\x01")
        assert conn.recv(4) == b"\x00\x00\x00\x00"  # SecurityResult OK
        conn.sendall(b"\x01")  # ClientInit, shared
        width, height = int.from_bytes(conn.recv(2)), int.from_bytes(conn.recv(2))
        assert width > 0 and height > 0
    # vt100 is the serial console, read with the session over GET.
    vt100 = found["vt100"]["location"]
    assert vt100 == f"{shared_server.url}/console/serial?uuid={s.xenapi.VM.get_uuid(vm)}"


def listening_inodes() -> set[str]:
    """Socket inodes that listen: TCP (state 0A) over IPv4 and IPv6, and UNIX (flag __SO_ACCEPTCON)."""
    found = set()
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A":
                found.add(cols[9])
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        cols = line.split()
        if int(cols[3], 16) & 0x10000:
            found.add(cols[6])
    return found


def test_qemu_listens_nowhere(shared_server: PoolServer, running: tuple[XenAPI.Session, str]) -> None:
    """QEMU's VNC server has no port and no socket path: none of QEMU's sockets listens."""
    [pid] = qemu_pids(shared_server)
    fds = Path(f"/proc/{pid}/fd")
    inodes = {os.readlink(fd).removeprefix("socket:[").rstrip("]") for fd in fds.iterdir()
              if os.readlink(fd).startswith("socket:")}  # fmt: skip
    assert inodes and not inodes & listening_inodes()


def test_console_refusals(shared_server: PoolServer, running: tuple[XenAPI.Session, str]) -> None:
    """A read-only user, a bad session and an unknown console are refused with xapi's failure."""
    s, vm = running
    shared_server.add_user("viewer", Role.READ_ONLY)
    viewer = shared_server.session("viewer", "pw")
    rfb = consoles(viewer, vm)["rfb"]["location"]  # a read-only user sees the records
    for session, status, code in (
        (viewer.handle, b"403", b"RBAC_PERMISSION_DENIED"),
        ("OpaqueRef:forged", b"401", b"SESSION_INVALID"),
    ):
        with connect(shared_server, rfb, session) as conn:
            head = read_head(conn)
            assert head.startswith(b"HTTP/1.1 " + status), head
            assert conn.recv(200).startswith(code)
    with connect(shared_server, f"{shared_server.url}/console?ref=OpaqueRef:nope", s.handle) as conn:
        assert read_head(conn).startswith(b"HTTP/1.1 404")
    viewer.xenapi.session.logout()


def test_evacuation_on_one_host(running: tuple[XenAPI.Session, str]) -> None:
    """A running VM has nowhere to go: xapi's NO_HOSTS_AVAILABLE, for it alone (not the control domain)."""
    s, vm = running
    host = s.xenapi.host.get_all()[0]
    assert s.xenapi.host.get_vms_which_prevent_evacuation(host) == {vm: ["NO_HOSTS_AVAILABLE", vm]}
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.host.evacuate(host, NULL_REF, "1")
    assert info.value.details == ["NO_HOSTS_AVAILABLE", vm]


def test_consoles_go_with_the_vm(shared_server: PoolServer, running: tuple[XenAPI.Session, str]) -> None:
    """A halted VM has no consoles; started again, new ones."""
    s, vm = running
    before = set(s.xenapi.VM.get_consoles(vm))
    s.xenapi.VM.hard_shutdown(vm)
    assert s.xenapi.VM.get_consoles(vm) == [] and not before & set(s.xenapi.console.get_all())
    s.xenapi.VM.start(vm, False, False)
    assert len(s.xenapi.VM.get_consoles(vm)) == 2


def test_consoles_after_a_server_restart(shared_server: PoolServer, running: tuple[XenAPI.Session, str]) -> None:
    """Consoles are remade for the VMs a restarted server reattaches, and reach the same QEMU."""
    _, vm = running
    shared_server.stop(keep_vms=True)
    shared_server.start()
    s = shared_server.session()
    with connect(shared_server, consoles(s, vm)["rfb"]["location"], s.handle) as conn:
        assert read_head(conn).startswith(b"HTTP/1.1 200 OK\r\n")
        assert conn.recv(12) == b"RFB 003.008\n"
    s.xenapi.session.logout()

"""VM consoles: their records while a VM runs, and the authorised way into a VNC console.

As xapi, a running (or paused) VM has two consoles, made when it starts and removed when it
stops: ``rfb``, its VNC display, and ``vt100``, its serial line. Their ``location`` is a URL of
this pool server that needs a session (``session_id``), as xapi's:

- rfb: ``/console?ref=<console>``, reached with ``CONNECT`` (xapi's and XenCenter's way): the
  server answers ``200`` and from then on carries the RFB stream both ways. QEMU's VNC server
  listens nowhere; each client gets a socket QEMU was handed over QMP (hypervisor/qemu/argv.py).
- vt100: the serial output, ``GET /console/serial?uuid=<vm>`` (docs/vms.md).

Both need vm-operator, as xapi's ``connect_console`` does: a read-only user sees the records and
cannot get in.
"""

from __future__ import annotations

import socket
import urllib.parse
from typing import TYPE_CHECKING

from farside.db import Transaction
from farside.errors import HandleInvalid, RbacPermissionDenied, XenAPIFailure
from farside.model.roles import Role

if TYPE_CHECKING:  # the services hold the VM service, which keeps consoles in step: no import cycle
    from farside.api.context import Services

CONSOLE_PATH = "/console"
SERIAL_PATH = "/console/serial"
NEEDED = Role.VM_OPERATOR
_LIVE = ("Running", "Paused")


def sync(tx: Transaction, vm: str, state: str, base_url: str) -> None:
    """Make the VM's consoles when it runs, remove them when it does not."""
    consoles = tx.get_field("VM", vm, "consoles")
    if state not in _LIVE:
        for console in consoles:
            tx.destroy("console", console)
        return
    if consoles:
        return
    rfb = tx.create("console", {"protocol": "rfb", "VM": vm})
    tx.set_fields("console", rfb, {"location": f"{base_url}{CONSOLE_PATH}?ref={rfb}"})
    uuid = tx.get_field("VM", vm, "uuid")
    tx.create("console", {"protocol": "vt100", "VM": vm, "location": f"{base_url}{SERIAL_PATH}?uuid={uuid}"})


def connect(services: Services, target: str) -> socket.socket:
    """A connection to the VNC console a ``CONNECT`` target (``/console?ref=…&session_id=…``)
    names, for a caller allowed in. Blocking (it talks to QEMU): call it on a worker thread.

    Raises:
        FarsideError: SESSION_INVALID, RBAC_PERMISSION_DENIED, HANDLE_INVALID, or
            VM_BAD_POWER_STATE when the VM stopped meanwhile.
    """
    parsed = urllib.parse.urlsplit(target)
    if parsed.path != CONSOLE_PATH:
        raise HandleInvalid("console", target)
    query = dict(urllib.parse.parse_qsl(parsed.query))
    caller = services.sessions.validate(query.get("session_id", ""))
    if not caller.role.allows(NEEDED):
        raise RbacPermissionDenied(
            "http/connect_console", f"{caller.user_name} is {caller.role.wire}; this needs {NEEDED.wire}"
        )
    ref = query.get("ref", "")
    with services.db.read() as tx:
        if not ref and query.get("uuid"):
            ref = tx.ref_of_uuid("console", query["uuid"])
        record = tx.get_record("console", tx.check("console", ref))
        if record["protocol"] != "rfb":
            raise HandleInvalid("console", ref)  # the serial console is read over GET, not tunnelled
        vm = tx.get_record("VM", record["VM"])
    if vm["power_state"] not in _LIVE:
        raise XenAPIFailure("VM_BAD_POWER_STATE", record["VM"], "running", vm["power_state"].lower())
    return services.vms.driver.vnc_socket(vm["uuid"])

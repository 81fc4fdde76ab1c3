"""The demo until disaster recovery lands: make a pool, serve it, drive it with the XenAPI SDK.

Everything runs on this machine in a temporary directory that is removed at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import XenAPI

PASSWORD = "demo-secret"
MIB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def farside(*args: str) -> list[str]:
    return [sys.executable, "-m", "farside.cli.main", *args]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="farside-demo-") as tmp:
        data = Path(tmp) / "site-a"
        subprocess.run(farside("init", str(data), "--pool-name", "Site A", "--admin-password", PASSWORD), check=True)
        subprocess.run(farside("user", "add", str(data), "operator", "--role", "vm-operator", "--password", "op"),
                       check=True)  # fmt: skip
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(farside("server", str(data), "--listen", f"127.0.0.1:{port}"), start_new_session=True)
        try:
            _wait(url)
            _drive(url)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(10)
    print("demo finished: the pool, its server and its data are gone")
    return 0


def _wait(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


def _drive(url: str) -> None:
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", PASSWORD, "1.0", "farside-demo")
    pool = s.xenapi.pool.get_all_records()
    host = s.xenapi.host.get_record(s.xenapi.session.get_this_host(s.handle))
    print(f"pool: {[p['name_label'] for p in pool.values()]}, host {host['hostname']} "
          f"with {len(host['host_CPUs'])} CPUs, Farside {host['software_version']['product_version']}")  # fmt: skip
    app = s.xenapi.VM_appliance.create({"name_label": "web tier", "name_description": "front and back"})
    for order, name in enumerate(["database", "app server", "web server"]):
        size = str(16 * MIB)
        vm = s.xenapi.VM.create(
            {"name_label": name, "memory_static_max": size, "memory_dynamic_max": size,
             "memory_dynamic_min": size, "memory_static_min": size, "VCPUs_max": "1", "VCPUs_at_startup": "1"}
        )  # fmt: skip
        s.xenapi.VM.set_appliance(vm, app)
        s.xenapi.VM.set_order(vm, order)
        s.xenapi.VM.set_start_delay(vm, 5 if order < 2 else 0)
    for vm in s.xenapi.VM_appliance.get_VMs(app):
        r = s.xenapi.VM.get_record(vm)
        print(f"  VM {r['name_label']:<11} order {r['order']} start_delay {r['start_delay']} uuid {r['uuid']}")
    task = s.xenapi.Async.VM.set_ha_restart_priority(vm, "restart")
    while s.xenapi.task.get_status(task) == "pending":
        time.sleep(0.05)
    print(f"Async.VM.set_ha_restart_priority -> task {s.xenapi.task.get_status(task)}")
    op = XenAPI.Session(url)
    op.xenapi.login_with_password("operator", "op", "1.0", "farside-demo")
    try:
        op.xenapi.VM.set_order(vm, 9)
    except XenAPI.Failure as failure:
        print(f"vm-operator may not reorder VMs: {failure.details[:2]}")
    op.xenapi.session.logout()
    s.xenapi.session.logout()


if __name__ == "__main__":
    sys.exit(main())

"""Readiness probes on two real sites: TCP and HTTP probes against listeners on the host side, a
probe that fails its order group, and a resumed start that continues a VM left paused."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from listeners import web_server
from pools import PoolServer, kill_qemus
from vms import bootable_vm, make_sr

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def web() -> Iterator[str]:
    with web_server() as url:
        yield url


def site(a: PoolServer, lun: Path, vms: dict[str, tuple[int, dict[str, str]]]) -> dict[str, str]:
    """VMs on a replicated SR at A, each (order, other_config); returns name -> uuid."""
    s = a.session()
    sr = make_sr(s, lun)
    s.xenapi.SR.enable_database_replication(sr)
    uuids = {}
    for name, (order, config) in vms.items():
        vm = bootable_vm(a, s, sr, name)
        s.xenapi.VM.set_order(vm, order)
        for key, value in config.items():
            s.xenapi.VM.add_to_other_config(vm, key, value)
        uuids[name] = s.xenapi.VM.get_uuid(vm)
    return uuids


def disaster(a: PoolServer, lun: Path, copy: Path) -> None:
    subprocess.run(["cp", "-a", str(lun), str(copy)], check=True)
    a.stop()
    kill_qemus(a.data_dir / "run")


def finish(s: XenAPI.Session, task: str) -> None:
    while s.xenapi.task.get_status(task) == "pending":
        time.sleep(0.1)


def failover(s: XenAPI.Session, copy: Path) -> tuple[str, dict[str, Any]]:
    """A failover onto the LUN copy, probes allowed to reach this host only; its ref and record."""
    options = {"luns": str(copy), "confirm_split": "true", "probe_hosts": "127.0.0.1", "declare_site_down": "Site A"}
    ref = s.xenapi.DR_run.create("failover", options)
    finish(s, s.xenapi.Async.DR_run.start(ref))
    return ref, s.xenapi.DR_run.get_record(ref)


def power(s: XenAPI.Session, uuid: str) -> str:
    return str(s.xenapi.VM.get_power_state(s.xenapi.VM.get_by_uuid(uuid)))


def test_a_failed_probe_stops_later_groups_and_resume_continues_a_paused_vm(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path
) -> None:
    a, b = two_pools
    port = free_port()
    probe = {"farside-ready": f"tcp:127.0.0.1:{port}", "farside-ready-timeout": "1", "farside-ready-policy": "fail"}
    uuids = site(a, tmp_path / "lun", {"plain": (0, {}), "service": (0, probe), "later": (1, {})})
    disaster(a, tmp_path / "lun", tmp_path / "copy")
    sb = b.session()
    ref, record = failover(sb, tmp_path / "copy")
    assert record["state"] == "failed"
    steps = json.loads(record["steps"])
    assert steps["start"]["state"] == "failed"
    assert f"tcp 127.0.0.1:{port} not seen within 1 s" in steps["start"]["error"]
    assert "later groups were not started" in steps["start"]["error"]
    assert power(sb, uuids["later"]) == "Halted"  # the failed group's successors never started
    # The interrupted start counted "plain" as started; it is left paused now (as QEMU is at -S
    # when a server dies between its start and its continue). The service comes up meanwhile.
    sb.xenapi.VM.pause(sb.xenapi.VM.get_by_uuid(uuids["plain"]))
    with socket.create_server(("127.0.0.1", port)):
        finish(sb, sb.xenapi.Async.DR_run.resume(ref))
        record = sb.xenapi.DR_run.get_record(ref)
    assert record["state"] == "done", record["steps"]
    assert {name: power(sb, uuid) for name, uuid in uuids.items()} == dict.fromkeys(uuids, "Running")
    vms = json.loads(record["steps"])["start"]["data"]["vms"]
    assert vms[uuids["service"]]["ready_seconds"] > 0 and "ready" not in vms[uuids["service"]]
    assert "Start VM plain - Succeeded" in record["report"]


def test_http_probe_and_a_host_outside_probe_hosts(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path, web: str
) -> None:
    a, b = two_pools
    uuids = site(
        a,
        tmp_path / "lun",
        {
            "web": (0, {"farside-ready": f"{web}/health", "farside-ready-timeout": "20"}),
            # Metadata naming another host: this site must not connect there on its word.
            "elsewhere": (0, {"farside-ready": "tcp:127.0.0.2:22", "farside-ready-timeout": "20"}),
        },
    )
    disaster(a, tmp_path / "lun", tmp_path / "copy")
    sb = b.session()
    _, record = failover(sb, tmp_path / "copy")
    assert record["state"] == "done", record["steps"]
    steps = json.loads(record["steps"])
    warnings = [p["text"] for p in steps["precheck"]["data"]["problems"] if p["subject"] == "elsewhere"]
    assert any("127.0.0.2, which is not in the run's probe_hosts" in w for w in warnings)
    vms = steps["start"]["data"]["vms"]
    assert vms[uuids["web"]]["ready_seconds"] > 0
    assert vms[uuids["elsewhere"]]["ready"] == "tcp 127.0.0.2:22 not tried: 127.0.0.2 is not in the run's probe_hosts"
    assert "not in the run's probe_hosts" in record["report"]

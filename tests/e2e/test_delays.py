"""start_delay and shutdown_delay: bounded on set, and a delay being slept ends on task.cancel, on a
hard_shutdown of its VM and when the server stops (issue 14, points 4 and 7).

The attack they answer: ``VM.set_start_delay(vm, 10**9)`` then ``Async.VM.start`` held the VM
(hard_shutdown refused), left ``task.cancel`` at "cancelling" and made the server ignore SIGTERM.
The longest delay a VM may have now is an hour, which is for ever to a test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path

import pytest
import XenAPI

from farside.model.vm_rules import MAX_DELAY_S

from pools import MINIMAL_VM, PoolServer
from vms import bootable_vm, make_sr, qemu_pids, wait_serial, wait_state, wait_task

NULL = "OpaqueRef:NULL"
# Bounds on waits for what is prompt (a woken delay, a stopping server); not timing assertions.
EXIT_WAIT_S = 30


@pytest.fixture
def pool(server: PoolServer, tmp_path: Path) -> tuple[PoolServer, XenAPI.Session, str]:
    s = server.session()
    return server, s, make_sr(s, tmp_path / "lun")


def held_start(server: PoolServer, s: XenAPI.Session, sr: str, tag: str) -> tuple[str, str]:
    """A VM with the longest start_delay, started by Async.VM.start: returns it and its task once
    the VM runs and the task sleeps the delay."""
    vm = bootable_vm(server, s, sr, tag)
    s.xenapi.VM.set_start_delay(vm, str(MAX_DELAY_S))
    task = s.xenapi.Async.VM.start(vm, False, False)
    wait_state(s, vm, "Running")
    wait_serial(server, s, vm, f"BOOT {tag}".encode())
    assert s.xenapi.task.get_status(task) == "pending"
    assert list(s.xenapi.VM.get_current_operations(vm).values()) == ["start"]
    return vm, task


def let_go(s: XenAPI.Session, vm: str) -> None:
    """No operation holds the VM, and it books no host."""
    record = s.xenapi.VM.get_record(vm)
    assert record["current_operations"] == {}
    assert record["scheduled_to_be_resident_on"] == NULL


class TestBound:
    def test_delays_above_the_bound_are_invalid(self, shared_server: PoolServer) -> None:
        """set_start_delay, set_shutdown_delay and VM.create refuse a delay over an hour (or below 0)."""
        s = shared_server.session()
        vm = s.xenapi.VM.create(MINIMAL_VM)
        for setter, field in (("set_start_delay", "start_delay"), ("set_shutdown_delay", "shutdown_delay")):
            for bad in (10**9, MAX_DELAY_S + 1, -1):
                with pytest.raises(XenAPI.Failure) as info:
                    getattr(s.xenapi.VM, setter)(vm, str(bad))
                assert info.value.details == ["INVALID_VALUE", field, str(bad)]
            assert s.xenapi.VM.get_record(vm)[field] == "0"
            getattr(s.xenapi.VM, setter)(vm, str(MAX_DELAY_S))
            assert s.xenapi.VM.get_record(vm)[field] == str(MAX_DELAY_S)
        vms = set(s.xenapi.VM.get_all())
        for field in ("start_delay", "shutdown_delay"):
            with pytest.raises(XenAPI.Failure) as info:
                s.xenapi.VM.create({**MINIMAL_VM, field: str(10**9)})
            assert info.value.details == ["INVALID_VALUE", field, str(10**9)]
        assert set(s.xenapi.VM.get_all()) == vms  # nothing half made
        s.xenapi.VM.destroy(vm)


class TestWake:
    def test_task_cancel_ends_the_start_delay(self, pool: tuple[PoolServer, XenAPI.Session, str]) -> None:
        """task.cancel of a start sleeping its delay ends it as cancelled; the VM runs on and is free."""
        server, s, sr = pool
        vm, task = held_start(server, s, sr, "cancelled")
        s.xenapi.task.cancel(task)
        record = wait_task(s, task)
        assert record["status"] == "cancelled"
        assert record["error_info"] == ["TASK_CANCELLED", task]
        assert s.xenapi.VM.get_power_state(vm) == "Running"
        let_go(s, vm)
        s.xenapi.VM.hard_shutdown(vm)
        assert qemu_pids(server) == []

    def test_hard_shutdown_ends_the_start_delay(self, pool: tuple[PoolServer, XenAPI.Session, str]) -> None:
        """hard_shutdown of a VM whose start sleeps its delay is not refused: the delay ends, the
        start succeeds (the VM was started) and the VM is stopped."""
        server, s, sr = pool
        vm, task = held_start(server, s, sr, "stopped")
        s.xenapi.VM.hard_shutdown(vm)
        assert s.xenapi.VM.get_power_state(vm) == "Halted"
        assert wait_task(s, task)["status"] == "success"
        let_go(s, vm)
        assert qemu_pids(server) == []

    def test_hard_shutdown_ends_its_own_shutdown_delay_on_cancel(
        self, pool: tuple[PoolServer, XenAPI.Session, str]
    ) -> None:
        """A shutdown_delay slept after the VM stopped is cancelled like a start_delay."""
        server, s, sr = pool
        vm = bootable_vm(server, s, sr, "down")
        s.xenapi.VM.set_shutdown_delay(vm, str(MAX_DELAY_S))
        s.xenapi.VM.start(vm, False, False)
        task = s.xenapi.Async.VM.hard_shutdown(vm)
        wait_state(s, vm, "Halted")
        assert s.xenapi.task.get_status(task) == "pending"
        s.xenapi.task.cancel(task)
        assert wait_task(s, task)["status"] == "cancelled"
        let_go(s, vm)
        assert qemu_pids(server) == []

    def test_vapp_cancel_starts_no_further_group(self, pool: tuple[PoolServer, XenAPI.Session, str]) -> None:
        """Cancelling a vApp start in its first group's delay ends it there: the next group does
        not start. Cancelling its hard_shutdown in the last group's shutdown_delay stops it there."""
        server, s, sr = pool
        app = s.xenapi.VM_appliance.create({"name_label": "held", "name_description": ""})
        first, second = bootable_vm(server, s, sr, "first"), bootable_vm(server, s, sr, "second")
        for order, vm in enumerate((first, second)):
            s.xenapi.VM.set_appliance(vm, app)
            s.xenapi.VM.set_order(vm, str(order))
        s.xenapi.VM.set_start_delay(first, str(MAX_DELAY_S))
        task = s.xenapi.Async.VM_appliance.start(app, False)
        wait_state(s, first, "Running")
        s.xenapi.task.cancel(task)
        record = wait_task(s, task)
        assert record["status"] == "cancelled", record["error_info"]
        assert s.xenapi.VM.get_power_state(second) == "Halted"
        assert s.xenapi.VM_appliance.get_current_operations(app) == {}
        let_go(s, first)
        # Shutting down goes last group first: the second VM, whose shutdown_delay holds the vApp.
        s.xenapi.VM.start(second, False, False)
        s.xenapi.VM.set_shutdown_delay(second, str(MAX_DELAY_S))
        task = s.xenapi.Async.VM_appliance.hard_shutdown(app)
        wait_state(s, second, "Halted")
        s.xenapi.task.cancel(task)
        assert wait_task(s, task)["status"] == "cancelled"
        assert s.xenapi.VM.get_power_state(first) == "Running"
        s.xenapi.VM_appliance.hard_shutdown(app)
        assert qemu_pids(server) == []


class TestServerStop:
    def test_sigterm_stops_the_server_in_a_start_delay(self, pool_dir: Path, tmp_path: Path) -> None:
        """SIGTERM stops a server whose starts sleep their delays (an Async vApp start in its first
        group, a synchronous VM.start holding its connection); the vApp's next group is not started,
        the started VMs run on and are free when the server comes back."""
        server = PoolServer(pool_dir).start()
        try:
            s = server.session()
            sr = make_sr(s, tmp_path / "lun")
            app = s.xenapi.VM_appliance.create({"name_label": "stopped", "name_description": ""})
            background, later = bootable_vm(server, s, sr, "async"), bootable_vm(server, s, sr, "later")
            for order, vm in enumerate((background, later)):
                s.xenapi.VM.set_appliance(vm, app)
                s.xenapi.VM.set_order(vm, str(order))
            s.xenapi.VM.set_start_delay(background, str(MAX_DELAY_S))
            s.xenapi.Async.VM_appliance.start(app, False)
            wait_state(s, background, "Running")
            waiting = bootable_vm(server, s, sr, "sync")
            s.xenapi.VM.set_start_delay(waiting, str(MAX_DELAY_S))
            answers: list[object] = []
            call = threading.Thread(target=lambda: answers.append(_start(server, waiting)), daemon=True)
            call.start()
            wait_state(s, waiting, "Running")
            assert server.process is not None
            os.killpg(server.process.pid, signal.SIGTERM)
            try:
                server.process.wait(EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                raise AssertionError("the server ignored SIGTERM while starts slept their delays") from None
            call.join(EXIT_WAIT_S)
            # The call is answered before the connection closes: the delay was cut short.
            assert answers and isinstance(answers[0], list) and answers[0][0] == "OPERATION_NOT_ALLOWED", answers
        except BaseException:
            server.stop()
            raise
        server.stop(keep_vms=True)
        server = PoolServer(pool_dir).start()
        try:
            s = server.session()
            assert s.xenapi.VM.get_power_state(later) == "Halted"
            for vm in (background, waiting):
                assert s.xenapi.VM.get_power_state(vm) == "Running"
                let_go(s, vm)
                s.xenapi.VM.hard_shutdown(vm)
            assert qemu_pids(server) == []
        finally:
            server.stop()

    def test_kill_in_a_start_delay_leaves_no_schedule(self, pool_dir: Path, tmp_path: Path) -> None:
        """A server killed while two starts sleep their delays: after the restart neither VM books
        the host (scheduled_to_be_resident_on), the one whose QEMU died meanwhile is Halted and its
        memory free again, the other runs on."""
        server = PoolServer(pool_dir).start()
        try:
            s = server.session()
            sr = make_sr(s, tmp_path / "lun")
            host = s.xenapi.host.get_all()[0]
            metrics = s.xenapi.host.get_metrics(host)
            free_before = int(s.xenapi.host_metrics.get_memory_free(metrics))
            kept, _ = held_start(server, s, sr, "kept")
            lost, _ = held_start(server, s, sr, "lost")
            assert s.xenapi.VM.get_scheduled_to_be_resident_on(lost) == host
            lost_pid = int(s.xenapi.VM.get_domid(lost))
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(EXIT_WAIT_S)
        except BaseException:
            server.stop()
            raise
        server.stop(keep_vms=True)
        os.kill(lost_pid, signal.SIGKILL)
        server = PoolServer(pool_dir).start()
        try:
            s = server.session()
            assert s.xenapi.VM.get_power_state(kept) == "Running"
            assert s.xenapi.VM.get_power_state(lost) == "Halted"
            for vm in (kept, lost):
                let_go(s, vm)
            one_vm = 16 * (1 << 20) + 32 * (1 << 20)  # its memory and QEMU's overhead
            assert int(s.xenapi.host_metrics.get_memory_free(metrics)) == free_before - one_vm
            s.xenapi.VM.hard_shutdown(kept)
            assert qemu_pids(server) == []
        finally:
            server.stop()


def _start(server: PoolServer, vm: str) -> object:
    """A synchronous VM.start on a session of its own: "success", or how it ended."""
    s = server.session()
    try:
        s.xenapi.VM.start(vm, False, False)
        return "success"
    except XenAPI.Failure as exc:
        return exc.details
    except OSError as exc:  # the connection closed by the stopping server
        return repr(exc)

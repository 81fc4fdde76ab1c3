"""VM_appliance: vApps start their VMs by order groups and shut them down in reverse (xenapi-dr.md §6).

Within a group every VM's operation runs at once; the next group starts when all of them have
returned. The delays are slept inside each VM's operation (``start_delay`` after a start,
``shutdown_delay`` after a shutdown), as xapi does, so a group waits for its slowest member's
operation plus delay. VMs whose operation failed are named in OPERATION_PARTIALLY_FAILED. A
cancel of the vApp's task, or the server's stop, ends the delays being slept and starts no
further group.
"""

from __future__ import annotations

import contextlib
import logging
import uuid as uuidlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby
from typing import Any

from farside.api.context import Context
from farside.api.registry import handles
from farside.errors import FarsideError, OperationNotAllowed, XenAPIFailure
from farside.model.types import NULL_REF

log = logging.getLogger(__name__)


@handles("VM_appliance.destroy")
def destroy(ctx: Context, appliance: str) -> str:
    with ctx.db.write() as tx:
        for vm in tx.get_field("VM_appliance", tx.check("VM_appliance", appliance), "VMs"):
            tx.set_fields("VM", vm, {"appliance": NULL_REF})
        tx.destroy("VM_appliance", appliance)
    return ""


@contextlib.contextmanager
def _claim(ctx: Context, appliance: str, op: str) -> Iterator[list[dict[str, Any]]]:
    """One operation at a time on a vApp; yields its members' records."""
    token = str(uuidlib.uuid4())
    with ctx.db.write() as tx:
        record = tx.get_record("VM_appliance", tx.check("VM_appliance", appliance))
        if record["current_operations"]:
            raise XenAPIFailure("OTHER_OPERATION_IN_PROGRESS", "VM_appliance", appliance)
        members = [{**tx.get_record("VM", vm), "ref": vm} for vm in record["VMs"]]
        if not members:
            raise OperationNotAllowed("Appliance has no VMs.")
        tx.set_fields("VM_appliance", appliance, {"current_operations": {token: op}, "allowed_operations": []})
    try:
        yield members
    finally:
        with ctx.db.write() as tx:
            if tx.exists("VM_appliance", appliance):
                tx.set_fields(
                    "VM_appliance",
                    appliance,
                    {"current_operations": {}, "allowed_operations": _allowed(ctx, appliance)},
                )


def _allowed(ctx: Context, appliance: str) -> list[str]:
    with ctx.db.read() as tx:
        states = [tx.get_field("VM", vm, "power_state") for vm in tx.get_field("VM_appliance", appliance, "VMs")]
    allowed = []
    if "Halted" in states:
        allowed.append("start")
    if "Running" in states:
        allowed.append("clean_shutdown")
    if any(s != "Halted" for s in states):
        allowed += ["hard_shutdown", "shutdown"]
    return allowed


def _run_groups(
    ctx: Context, members: list[dict[str, Any]], ascending: bool, operation: Callable[[str], None], name: str
) -> None:
    ordered = sorted(members, key=lambda m: m["order"], reverse=not ascending)
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=max(len(members), 1), thread_name_prefix="vapp") as pool:
        for _, group in groupby(ordered, key=lambda m: m["order"]):
            # A group starts only once the one before it has waited out its delays.
            ctx.check_cancelled()
            ctx.services.vms.check_not_stopping()
            refs = [m["ref"] for m in group]
            futures = {ref: pool.submit(operation, ref) for ref in refs}
            for ref, future in futures.items():
                try:
                    future.result()
                except FarsideError as exc:
                    log.warning("%s: VM %s failed: %s", name, ref, exc.describe())
                    failed.append(ref)
    ctx.check_cancelled()  # a member's delay cut short by the cancel is no failure of that member
    if failed:
        raise XenAPIFailure("OPERATION_PARTIALLY_FAILED", name, *failed)


@handles("VM_appliance.start")
def start(ctx: Context, appliance: str, paused: bool) -> str:
    with _claim(ctx, appliance, "start") as members:
        targets = [m for m in members if m["power_state"] == "Halted"]
        if not targets:
            raise OperationNotAllowed("There are no halted VMs in this appliance.")
        vms = ctx.services.vms
        _run_groups(ctx, targets, True, lambda vm: vms.start(vm, paused, ctx.task), "VM_appliance.start")
    return ""


def _shut_down(ctx: Context, appliance: str, op: str, operation: Callable[[str], None]) -> str:
    """A shutdown variant over the members not halted (clean: running), last order group first."""
    with _claim(ctx, appliance, op) as members:
        if op == "clean_shutdown":
            targets = [m for m in members if m["power_state"] == "Running"]
            nothing = "There are no running VMs in this appliance."
        else:
            targets = [m for m in members if m["power_state"] != "Halted"]
            nothing = "All VMs in this appliance are halted."
        if not targets:
            raise OperationNotAllowed(nothing)
        _run_groups(ctx, targets, False, operation, f"VM_appliance.{op}")
    return ""


@handles("VM_appliance.clean_shutdown")
def clean_shutdown(ctx: Context, appliance: str) -> str:
    return _shut_down(ctx, appliance, "clean_shutdown", lambda vm: ctx.services.vms.clean_shutdown(vm, task=ctx.task))


@handles("VM_appliance.hard_shutdown")
def hard_shutdown(ctx: Context, appliance: str) -> str:
    return _shut_down(ctx, appliance, "hard_shutdown", lambda vm: ctx.services.vms.hard_shutdown(vm, task=ctx.task))


@handles("VM_appliance.shutdown")
def shutdown(ctx: Context, appliance: str) -> str:
    return _shut_down(ctx, appliance, "shutdown", lambda vm: ctx.services.vms.shutdown(vm, task=ctx.task))

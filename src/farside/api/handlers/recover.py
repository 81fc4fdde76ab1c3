"""VM.recover, VM_appliance.recover and their checks, called with a session from VDI.open_database.

The call's own session reads the foreign pool's metadata; ``session_to`` names this pool and must
belong to a pool operator or stronger (xapi's ``assert_session_allows_dr``).
"""

from __future__ import annotations

from farside.api.context import Context
from farside.api.registry import handles
from farside.db import Database
from farside.dr import recovery
from farside.errors import OperationNotAllowed, RbacPermissionDenied, XenAPIFailure
from farside.model.roles import Role

# xapi's words (xapi_dr.ml), so scripts written against XenServer match them.
DR_DENIED = "The supplied session does not have the required permissions for VM recovery."


def _databases(ctx: Context, session_to: str, message: str) -> tuple[Database, Database]:
    if ctx.caller.database is None:
        raise OperationNotAllowed(f"{message} takes a session from VDI.open_database as its session")
    target = ctx.services.sessions.validate(session_to)
    if target.database is not None or not target.role.allows(Role.POOL_OPERATOR):
        raise RbacPermissionDenied(
            message, "The supplied session does not have the required permissions for VM recovery."
        )
    return ctx.caller.database, ctx.services.db


def _not_in_appliance(foreign: Database, vm: str) -> None:
    with foreign.read() as tx:
        appliance = tx.get_field("VM", tx.check("VM", vm), "appliance")
        if tx.exists("VM_appliance", appliance):
            raise XenAPIFailure("VM_IS_PART_OF_AN_APPLIANCE", vm, appliance)


@handles("VM.assert_can_be_recovered", foreign_db=True)
def vm_assert(ctx: Context, vm: str, session_to: str) -> str:
    foreign, target = _databases(ctx, session_to, "VM.assert_can_be_recovered")
    recovery.assert_can_be_recovered(foreign, target, vm)
    return ""


@handles("VM.get_SRs_required_for_recovery", foreign_db=True)
def vm_required_srs(ctx: Context, vm: str, session_to: str) -> list[str]:
    foreign, target = _databases(ctx, session_to, "VM.get_SRs_required_for_recovery")
    with foreign.read() as tx:
        tx.check("VM", vm)
    return recovery.required_srs(foreign, target, vm)


@handles("VM.recover", foreign_db=True)
def vm_recover(ctx: Context, vm: str, session_to: str, force: bool) -> str:
    foreign, target = _databases(ctx, session_to, "VM.recover")
    _not_in_appliance(foreign, vm)
    recovery.recover(foreign, target, [vm], force)
    return ""


def _members(foreign: Database, appliance: str) -> list[str]:
    with foreign.read() as tx:
        return list(tx.get_field("VM_appliance", tx.check("VM_appliance", appliance), "VMs"))


@handles("VM_appliance.assert_can_be_recovered", foreign_db=True)
def appliance_assert(ctx: Context, appliance: str, session_to: str) -> str:
    foreign, target = _databases(ctx, session_to, "VM_appliance.assert_can_be_recovered")
    for vm in _members(foreign, appliance):
        recovery.assert_can_be_recovered(foreign, target, vm)
    return ""


@handles("VM_appliance.get_SRs_required_for_recovery", foreign_db=True)
def appliance_required_srs(ctx: Context, appliance: str, session_to: str) -> list[str]:
    foreign, target = _databases(ctx, session_to, "VM_appliance.get_SRs_required_for_recovery")
    needed: list[str] = []
    for vm in _members(foreign, appliance):
        needed += recovery.required_srs(foreign, target, vm)
    return list(dict.fromkeys(needed))


@handles("VM_appliance.recover", foreign_db=True)
def appliance_recover(ctx: Context, appliance: str, session_to: str, force: bool) -> str:
    foreign, target = _databases(ctx, session_to, "VM_appliance.recover")
    recovery.recover_appliance(foreign, target, appliance, force)
    return ""

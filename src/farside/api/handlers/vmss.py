"""VMSS: snapshot schedules with xapi's checks (xapi_vmss.ml); api/schedules.py runs them."""

from __future__ import annotations

from typing import Any

from farside.api import implicit
from farside.api.context import Context
from farside.api.registry import handles
from farside.errors import XenAPIFailure
from farside.model import CLASSES
from farside.model.types import format_datetime
from farside.model.vmss_rules import check_retained, check_schedule, with_defaults


@handles("VMSS.create")
def create(ctx: Context, record: dict[str, Any]) -> str:
    with ctx.db.write() as tx:
        fields = implicit.checked_fields(tx, CLASSES["VMSS"], record)
        frequency = fields.get("frequency", "hourly")
        fields["schedule"] = check_schedule(frequency, fields.get("schedule", {}))
        check_retained(fields.get("retained_snapshots", 7))
        # Counted from its creation: a new schedule does not run at once for an instant before it.
        fields["last_run_time"] = format_datetime(ctx.services.schedules.now())
        return tx.create("VMSS", fields)


@handles("VMSS.destroy")
def destroy(ctx: Context, vmss: str) -> str:
    with ctx.db.write() as tx:
        if tx.get_field("VMSS", tx.check("VMSS", vmss), "VMs"):
            raise XenAPIFailure("VMSS_HAS_VM")
        tx.destroy("VMSS", vmss)
    return ""


def _update(ctx: Context, vmss: str, change: dict[str, Any]) -> str:
    with ctx.db.write() as tx:
        record = {**tx.get_record("VMSS", tx.check("VMSS", vmss)), **change}
        check_retained(record["retained_snapshots"])
        record["schedule"] = check_schedule(record["frequency"], record["schedule"])
        tx.set_fields("VMSS", vmss, {k: record[k] for k in (*change, "schedule")})
    return ""


@handles("VMSS.set_retained_snapshots")
def set_retained_snapshots(ctx: Context, vmss: str, value: int) -> str:
    return _update(ctx, vmss, {"retained_snapshots": value})


@handles("VMSS.set_frequency")
def set_frequency(ctx: Context, vmss: str, value: str) -> str:
    with ctx.db.read() as tx:
        schedule = tx.get_field("VMSS", tx.check("VMSS", vmss), "schedule")
    return _update(ctx, vmss, {"frequency": value, "schedule": with_defaults(value, schedule)})


@handles("VMSS.set_schedule")
def set_schedule(ctx: Context, vmss: str, value: dict[str, str]) -> str:
    return _update(ctx, vmss, {"schedule": value})


@handles("VMSS.add_to_schedule")
def add_to_schedule(ctx: Context, vmss: str, key: str, value: str) -> str:
    with ctx.db.read() as tx:
        schedule = tx.get_field("VMSS", tx.check("VMSS", vmss), "schedule")
    if key in schedule:
        raise XenAPIFailure("MAP_DUPLICATE_KEY", "VMSS", "schedule", vmss, key)
    return _update(ctx, vmss, {"schedule": {**schedule, key: value}})


@handles("VMSS.remove_from_schedule")
def remove_from_schedule(ctx: Context, vmss: str, key: str) -> str:
    with ctx.db.read() as tx:
        schedule = dict(tx.get_field("VMSS", tx.check("VMSS", vmss), "schedule"))
    schedule.pop(key, None)
    return _update(ctx, vmss, {"schedule": schedule})


@handles("VMSS.set_type")
def set_type(ctx: Context, vmss: str, value: str) -> str:
    return _update(ctx, vmss, {"type": value})


@handles("VMSS.snapshot_now")
def snapshot_now(ctx: Context, vmss: str) -> str:
    """Run the schedule at once; the new snapshots' uuids, comma-separated."""
    return ",".join(ctx.services.schedules.run(vmss))

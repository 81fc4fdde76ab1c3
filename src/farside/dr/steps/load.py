"""Load: vApps and VMs of each chosen metadata; one VM uuid in several copies: only the newest is offered."""

from __future__ import annotations

from typing import Any

from farside.dr import probes
from farside.dr.context import RunContext


def run(ctx: RunContext, data: dict[str, Any]) -> None:
    vms: dict[str, dict[str, Any]] = {}
    vapps: dict[str, dict[str, Any]] = {}
    left_out: list[str] = []
    for meta in ctx.data("choose")["metadata"]:
        db = ctx.open_database(meta["vdi"])
        try:
            apps = ctx.s.call_as(db, "VM_appliance.get_all_records")
            records = ctx.s.call_as(db, "VM.get_all_records")
            vdis = ctx.s.call_as(db, "VDI.get_all_records")
            srs = ctx.s.call_as(db, "SR.get_all_records")
            vbds = ctx.s.call_as(db, "VBD.get_all_records")
        finally:
            ctx.close_database(db)
        for ref, app in apps.items():
            vapps[app["uuid"]] = {"uuid": app["uuid"], "name": app["name_label"], "ref": ref,
                                  "source": meta["vdi"], "members": []}  # fmt: skip
        for ref, r in records.items():
            if r["is_a_template"] or r["is_a_snapshot"] or r["is_control_domain"]:
                continue
            disks = []
            for vbd in r["VBDs"]:
                v = vbds.get(vbd, {})
                vdi = vdis.get(v.get("VDI", ""))
                if v.get("type") != "CD" and vdi is not None:
                    sr_uuid = srs.get(vdi["SR"], {}).get("uuid", "")
                    disks.append({"sr": sr_uuid, "location": vdi["location"], "size": int(vdi["virtual_size"])})
            vm = {
                "uuid": r["uuid"], "name": r["name_label"], "ref": ref, "source": meta["vdi"],
                "version": int(r["version"]), "written": meta["written"], "pool_name": meta["pool_name"],
                "appliance": apps[r["appliance"]]["uuid"] if r["appliance"] in apps else "",
                "order": int(r["order"]), "memory": int(r["memory_static_max"]),
                "vcpus": int(r["VCPUs_at_startup"]),
                "delays": {f: int(r[f]) for f in ("start_delay", "shutdown_delay")},
                "probe": {k: v for k, v in r["other_config"].items() if k in probes.KEYS},
                "disks": disks,
            }  # fmt: skip
            kept = vms.get(r["uuid"])
            if kept is None or (vm["version"], vm["written"]) > (kept["version"], kept["written"]):
                if kept is not None:
                    left_out.append(f"{kept['name']} ({kept['uuid']}) from {kept['pool_name']}")
                vms[r["uuid"]] = vm
            else:
                left_out.append(f"{vm['name']} ({vm['uuid']}) from {vm['pool_name']}")
    for vm in vms.values():
        if vm["appliance"] in vapps:
            vapps[vm["appliance"]]["members"].append(vm["uuid"])
    data.update(vms=vms, vapps=vapps, left_out=left_out)

"""The pre-checks of a DR run: small functions, each returning the problems it finds.

``VM_CHECKS`` run once per selected VM, ``RUN_CHECKS`` once per run, in the order listed (the
report lists their problems in that order). A new check is a new function added to a list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farside.dr import probes
from farside.dr.context import RunContext
from farside.dr.plan import Problem
from farside.dr.session import source_answers
from farside.errors import XenAPIFailure
from farside.storage.replication import ReplicationState

MIB = 1 << 20
QEMU_OVERHEAD = 32 * MIB


@dataclass(frozen=True)
class Scene:
    """What the checks look at, read once: the selected VMs (from the metadata) and this pool's
    VMs by uuid, SR refs by uuid, and VDI records by (SR ref, location)."""

    selected: list[dict[str, Any]]
    vms: dict[str, dict[str, Any]]
    srs: dict[str, str]
    vdis: dict[tuple[str, str], dict[str, Any]]

    @classmethod
    def of(cls, ctx: RunContext) -> Scene:
        return cls(
            ctx.selected_vms(),
            {r["uuid"]: r for r in ctx.s.call("VM.get_all_records").values()},
            {r["uuid"]: ref for ref, r in ctx.s.call("SR.get_all_records").items()},
            {(r["SR"], r["location"]): r for r in ctx.s.call("VDI.get_all_records").values()},
        )


VmCheck = Callable[[RunContext, Scene, dict[str, Any]], list[Problem]]
RunCheck = Callable[[RunContext, Scene], list[Problem]]


def existing(ctx: RunContext, scene: Scene, vm: dict[str, Any]) -> list[Problem]:
    """A VM with the same uuid here: replaced only when halted and older (the version rule)."""
    record = scene.vms.get(vm["uuid"])
    if record is None:
        return []
    if ctx.options.kind == "test":
        # A test's cleanup destroys what it recovered: replacing a VM here would lose it for good.
        return [Problem("error", vm["name"], "a VM with its uuid is in this pool: a test never replaces one",
                        "destroy that copy here first, or leave this VM out of the test")]  # fmt: skip
    if record["power_state"] != "Halted":
        return [Problem("error", vm["name"], f"a VM with its uuid is {record['power_state']} in this pool",
                        "shut it down (hard_shutdown) before recovering",
                        action={"method": "VM.hard_shutdown", "vm": vm["uuid"]})]  # fmt: skip
    if int(record["version"]) >= vm["version"]:
        return [Problem("error", vm["name"], "this pool has a copy at least as new (version rule)",
                        "destroy the older copy here if the metadata's copy must win")]  # fmt: skip
    return [Problem("warning", vm["name"], "an older halted copy here will be replaced")]


def disks(ctx: RunContext, scene: Scene, vm: dict[str, Any]) -> list[Problem]:
    """Metadata matches storage: every disk exists on an attached SR with its recorded size."""
    problems = []
    for disk in vm["disks"]:
        found = scene.vdis.get((scene.srs.get(disk["sr"], ""), disk["location"]))
        if found is None:
            problems.append(Problem("error", vm["name"], f"disk {disk['location']} of SR {disk['sr']} is missing",
                                    "attach the LUN that holds it"))  # fmt: skip
        elif int(found["virtual_size"]) != disk["size"]:
            problems.append(Problem("error", vm["name"], f"disk {disk['location']} has another size than recorded"))
    return problems


def storage(ctx: RunContext, scene: Scene) -> list[Problem]:
    """assert_can_be_recovered for each selected vApp and VM, as XenCenter's storage check."""
    problems = []
    loaded, chosen = ctx.data("load"), ctx.data("select")
    items = [(loaded["vapps"][u], "VM_appliance") for u in chosen["vapps"]]
    items += [(loaded["vms"][u], "VM") for u in chosen["vms"]]
    with ctx.databases() as database:
        for item, cls in items:
            db = database(item["source"])
            try:
                ctx.s.call_as(db, f"{cls}.assert_can_be_recovered", item["ref"], ctx.s.handle)
            except XenAPIFailure as exc:
                problems.append(Problem("error", item["name"], " ".join(exc.failure), "attach the SR it needs"))
    return problems


def replication(ctx: RunContext, scene: Scene) -> list[Problem]:
    """A failover or failback never recovers from a LUN still replicated into, nor, unconfirmed,
    from one whose replication nobody here manages."""
    problems = []
    for path in sorted({sr["path"] for sr in ctx.data("discover")["srs"]}):
        state = ctx.replication.state(Path(path))
        if state in (ReplicationState.REPLICATING, ReplicationState.RESYNCING) and ctx.options.kind != "test":
            problems.append(Problem("error", path, f"the LUN is still {state.value}", "split the mirror first",
                                    {"split_mirrors": "true"}))  # fmt: skip
        elif state is ReplicationState.UNKNOWN and ctx.options.kind != "test":
            severity = "warning" if ctx.options.confirm_split else "error"
            fix = "confirm that the array's mirroring is stopped (confirm_split=true)"
            problems.append(Problem(severity, path, "nobody here manages this LUN's replication", fix,
                                    {} if ctx.options.confirm_split else {"confirm_split": "true"}))  # fmt: skip
        elif state is ReplicationState.ERROR:
            problems.append(Problem("warning", path, "the LUN's replication reports an error"))
    return problems


def source(ctx: RunContext, scene: Scene) -> list[Problem]:
    """Whether the VMs still run in the source pool: asked when a session on it was given;
    otherwise, when ``source_url`` is set and the address answers, the operator is warned."""
    if ctx.source is not None:
        problems = []
        there = {r["uuid"]: r["power_state"] for r in ctx.source.call("VM.get_all_records").values()}
        for vm in scene.selected:
            state = there.get(vm["uuid"], "Halted")  # not there any more: nothing runs
            if state != "Halted":
                problems.append(Problem("error", vm["name"], f"it is still {state} in the source pool",
                                        "shut it down there first: two copies must never run"))  # fmt: skip
        return problems
    url = ctx.options.source_url
    if url and source_answers(ctx.s, url):
        return [Problem("warning", url, "the source pool answers; its VMs may still run",
                        "make sure the source pool's VMs are shut down")]  # fmt: skip
    return []


def capacity(ctx: RunContext, scene: Scene) -> list[Problem]:
    """Memory and vCPUs for the VMs the run starts (none: nothing to check)."""
    if ctx.options.power == "none":
        return []
    host = ctx.data("discover")["host"]
    metrics = ctx.s.call("host.get_metrics", host)
    free = int(ctx.s.call("host_metrics.get_memory_free", metrics))
    cpus = len(ctx.s.call("host.get_host_CPUs", host))
    needed = sum(vm["memory"] + QEMU_OVERHEAD for vm in scene.selected)
    problems = []
    if needed > free:
        problems.append(Problem("error", "memory", f"the VMs need {needed // MIB} MiB; the host has "
                                f"{free // MIB} MiB free", "select fewer VMs or free memory"))  # fmt: skip
    for vm in scene.selected:
        if vm["vcpus"] > cpus:
            problems.append(Problem("error", vm["name"], f"needs {vm['vcpus']} vCPUs; the host has {cpus}"))
    return problems


def readiness(ctx: RunContext, scene: Scene, vm: dict[str, Any]) -> list[Problem]:
    """The VM's readiness probe (from its metadata) can be understood, and may be tried from here."""
    if ctx.options.power != "start":
        return []  # nothing is probed unless VMs start running
    try:
        probe = probes.parse(vm["probe"], ctx.options.probe_defaults)
    except probes.ProbeError as exc:
        return [Problem("warning", vm["name"], f"its readiness probe is not understood ({exc}): it counts as up "
                        "once started")]  # fmt: skip
    where = None if probe is None else probes.host(probe)
    if probe is None or where is None or where in ctx.options.probe_hosts:
        return []
    return [Problem("warning", vm["name"], f"its readiness probe ({probe.describe()}) reaches {where}, which is "
                    "not in the run's probe_hosts: it will be reported as not ready",
                    f"add {where} to probe_hosts if this site may connect to it",
                    options={"probe_hosts": ",".join(sorted(ctx.options.probe_hosts | {where}))})]  # fmt: skip


def declared_site(ctx: RunContext, scene: Scene) -> list[Problem]:
    """A site declared down must be the one the VMs come from: the name typed is held to the pool
    name (or uuid) in the metadata of every selected VM, as SRM has the site's name typed."""
    fence = ctx.data("fence")
    if fence.get("how") != "declared":
        return []
    declared = fence["site"].strip().casefold()
    pools = {(vm["pool_name"], _pool_uuid(ctx, vm)) for vm in scene.selected}
    wrong = sorted({name for name, uuid in pools if declared not in (name.strip().casefold(), uuid)})
    if not wrong:
        return []
    text = f"the site declared down is {fence['site']}, but VMs come from pool {', '.join(wrong)}"
    return [Problem("error", "fencing", text, "declare the pool the VMs come from down (declare_site_down=ITS NAME)")]


def _pool_uuid(ctx: RunContext, vm: dict[str, Any]) -> str:
    """The uuid of the pool whose metadata the VM comes from."""
    return next((m["pool_uuid"] for m in ctx.data("choose")["metadata"] if m["vdi"] == vm["source"]), "")


VM_CHECKS: tuple[VmCheck, ...] = (existing, disks, readiness)
RUN_CHECKS: tuple[RunCheck, ...] = (storage, replication, source, declared_site, capacity)

"""The DR wizard as a library: discover, attach, choose metadata, select, pre-check, recover,
start, protect, report, and clean up (xenapi-dr.md §5, improved), written against XenAPI alone.

Every step is journaled in the run's ``DR_run`` record before and after it acts, and each step
reconciles by uuid before it does anything, so a run that was interrupted at any point is resumed
(``run`` again) without doing anything twice, and a test failover can always be cleaned up.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby
from pathlib import Path
from typing import Any
from xml.sax.saxutils import unescape

from farside.dr.plan import STEPS, Options, Problem
from farside.dr.report import render
from farside.dr.session import Session, source_answers
from farside.errors import FarsideError, XenAPIFailure
from farside.model.types import now
from farside.storage.replication import LunReplication, NullReplication, ReplicationState

log = logging.getLogger(__name__)

# What each step's outcome depends on among the options: changing them while the run is paused
# (DR_run.set_options) makes these steps run again; nothing before recover has changed the pool.
REDONE_BY = {
    "source_pool": ("choose", "load", "select", "precheck"),
    "split_mirrors": ("split", "select", "precheck"),
    "pause_after": (),
}
REDONE_BY_DEFAULT = ("select", "precheck")
# The classes a test failover must leave as it found them (compared by uuid).
CHECKED_CLASSES = ("VM", "VM_appliance", "SR", "VDI", "VBD", "VIF", "network", "PBD", "DR_task")
READY_TIMEOUT_S = 120.0
READY_POLL_S = 0.02
READY_KEY = "farside-ready-serial"
# The journal is written at each step's start and end, and within a step at most this often:
# anything done since the last write is found again by uuid when a run is resumed.
SAVE_INTERVAL_S = 1.0
# How long a dead engine's in-flight operation on a VM is waited for when a run is resumed.
OPERATION_WAIT_S = 300.0
# A claim not renewed for this long is taken over (its engine is gone without a word).
CLAIM_RENEW_S = 10.0
_PROBE_SR = re.compile(
    r"<SR>.*?<UUID>(.*?)</UUID>.*?<name_label>(.*?)</name_label>.*?<pool_metadata_detected>(\w+)"
    r"</pool_metadata_detected>(?:\s*<path>(.*?)</path>)?",
    re.S,
)
MIB = 1 << 20
QEMU_OVERHEAD = 32 * MIB


class RunFailed(Exception):
    """A step could not go on; the reason is in the run's journal and report."""


class RunTakenOver(RunFailed):
    """Another engine holds the run's claim now: this one stops without writing anything more."""


def changes(differences: dict[str, dict[str, list[str]]]) -> str:
    """The cleanup's differences from the baseline as a sentence: "VM added a, b; SR removed c"."""
    parts = [
        f"{cls} {what} {', '.join(uuids)}"
        for cls, found in differences.items()
        for what in ("added", "removed")
        if (uuids := found.get(what))
    ]
    return "; ".join(parts) or "nothing"


class Paused(Exception):
    """The run stopped after a step the options name in ``pause_after``."""


def runner_id() -> str:
    """Who runs an engine: host and process, so that a claim of a dead engine on this host is
    recognised as stale at once (the pool server checks, DR_run.claim)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


# An event for a client's progress display: {"step", "state" (started, done, failed, paused,
# progress), "done" and "total" for steps that work through items}.
StepEvent = dict[str, Any]


def reopened(journal: dict[str, Any], old: dict[str, str], new: dict[str, str]) -> dict[str, Any]:
    """The journal after a run's options change from ``old`` to ``new`` while it is stopped: the
    steps whose outcome depends on a changed option are dropped, to run again on resume.

    Raises ValueError when the change comes too late: the LUNs once discovery has run, anything
    once recovery has begun (the pool has changed by then)."""
    changed = {k for k in set(old) | set(new) if old.get(k, "") != new.get(k, "")}
    if "recover" in journal and changed - {"pause_after"}:
        raise ValueError("recovery has begun: the options can no longer change")
    if "luns" in changed and "discover" in journal:
        raise ValueError("the LUNs were discovered already: create a new run for other LUNs")
    dropped = {step for key in changed for step in REDONE_BY.get(key, REDONE_BY_DEFAULT)}
    return {name: entry for name, entry in journal.items() if name not in dropped}


class Engine:
    def __init__(
        self,
        session: Session,
        run: str,
        replication: LunReplication | None = None,
        on_progress: Callable[[float], None] | None = None,
        source: Session | None = None,
        on_step: Callable[[StepEvent], None] | None = None,
    ) -> None:
        self.s = session
        # A session on the source pool, when the operator can give one: the pre-check then asks
        # it whether the VMs still run there.
        self.source = source
        self.run_ref = run
        self.replication = replication or NullReplication()
        self._on_progress = on_progress
        self._on_step = on_step
        self.runner = runner_id()
        self._saved_at = 0.0
        self._lost = ""
        record = session.call("DR_run.get_record", run)
        self.options = Options.parse(record["kind"], record["options"])
        self.journal: dict[str, Any] = json.loads(record["steps"] or "{}")

    # -- the journal -----------------------------------------------------------------------------

    def _save(self, force: bool = True) -> None:
        if not force and time.monotonic() - self._saved_at < SAVE_INTERVAL_S:
            return
        self._write(steps=json.dumps(self.journal, sort_keys=True))
        self._saved_at = time.monotonic()

    def _write(self, **fields: str) -> None:
        """Save fields of the run as the claim's holder; the pool refuses once another holds it."""
        if self._lost:
            raise RunTakenOver(f"the run was taken over by another engine: {self._lost}")
        try:
            self.s.call("DR_run.save", self.run_ref, self.runner, fields)
        except XenAPIFailure as exc:
            if exc.failure[0] != "OPERATION_NOT_ALLOWED":
                raise
            self._lost = str(exc)
            raise RunTakenOver(f"the run was taken over by another engine: {exc}") from None

    def _emit(self, step: str, state: str, **counts: int) -> None:
        if self._on_step is not None:
            self._on_step({"step": step, "state": state, **counts})

    @contextlib.contextmanager
    def _claimed(self) -> Iterator[None]:
        """Hold the run's claim while acting on it, so that two engines never run it at once."""
        self.s.call("DR_run.claim", self.run_ref, self.runner)
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(CLAIM_RENEW_S):
                try:
                    self.s.call("DR_run.claim", self.run_ref, self.runner)
                except XenAPIFailure as exc:
                    if exc.failure[0] == "OPERATION_NOT_ALLOWED":
                        self._lost = str(exc)  # another engine took the run over
                        return
                except OSError:
                    pass

        keeper = threading.Thread(target=renew, name="dr-claim", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            keeper.join()
            # Best effort: a claim left behind is taken over once stale (or at once on this host).
            with contextlib.suppress(XenAPIFailure, OSError, http.client.HTTPException, xmlrpc.client.Error):
                self.s.call("DR_run.unclaim", self.run_ref, self.runner)

    def _data(self, step: str) -> dict[str, Any]:
        entry: dict[str, Any] = self.journal.setdefault(step, {"state": "pending", "data": {}})
        data: dict[str, Any] = entry["data"]
        return data

    def _done(self, step: str) -> bool:
        return bool(self.journal.get(step, {}).get("state") == "done")

    def _step(self, name: str, action: Callable[[dict[str, Any]], None]) -> None:
        if self._done(name):
            return
        entry = self.journal.setdefault(name, {"state": "pending", "data": {}})
        entry.update(state="started", started=now(), clock=time.time())
        entry.pop("error", None)
        self._save()
        self._emit(name, "started")
        try:
            action(entry["data"])
        # FarsideError, not only XenAPIFailure: the storage adapter raises Farside's own errors
        # (MirrorReplication.split: OperationNotAllowed, MirrorUnknown, ...), which must fail the
        # step, not escape the engine with the run left "running".
        except RunTakenOver:
            raise  # nothing more is ours to write
        except (FarsideError, RunFailed, OSError, ValueError) as exc:
            entry.update(state="failed", error=str(exc))
            self._save()
            self._emit(name, "failed")
            raise RunFailed(f"{name}: {exc}") from exc
        entry.update(state="done", finished=now(), seconds=round(time.time() - entry.pop("clock"), 3))
        self._save()
        self._emit(name, "done")
        if self._on_progress is not None and name in STEPS:
            self._on_progress((STEPS.index(name) + 1) / len(STEPS))

    # -- running -----------------------------------------------------------------------------

    def run(self) -> str:
        """Carry out the steps not yet done, up to the end or the next pause; the run's state after.

        On failure the run is marked failed, with its report, and RunFailed is raised."""
        with self._claimed():
            self._reload(("created", "running", "paused", "failed"))
            return self._run()

    def _reload(self, states: tuple[str, ...]) -> None:
        """Options and journal as they are now that the run is ours: set_options or another
        engine may have changed them between this engine's construction and its claim."""
        record = self.s.call("DR_run.get_record", self.run_ref)
        if record["state"] not in states:
            raise XenAPIFailure("OPERATION_NOT_ALLOWED", f"the run is {record['state']}")
        self.options = Options.parse(record["kind"], record["options"])
        self.journal = json.loads(record["steps"] or "{}")

    def _run(self) -> str:
        self._write(state="running")
        steps: dict[str, Callable[[dict[str, Any]], None]] = {
            "discover": self._discover,
            "split": self._split,
            "attach": self._attach,
            "choose": self._choose,
            "load": self._load,
            "select": self._select,
            "precheck": self._precheck,
            "recover": self._recover,
            "start": self._start,
            "protect": self._protect,
            "release": self._release,
            "report": self._report,
        }
        try:
            for name in STEPS:
                self._step(name, steps[name])
                entry = self.journal[name]
                if name in self.options.pause_after and not entry.get("paused"):
                    entry["paused"] = True  # paused once: a resume goes on past it
                    self._save()
                    self._write(state="paused")
                    self._emit(name, "paused")
                    return "paused"
        except RunTakenOver:
            raise
        except RunFailed:
            self._write_report("failed")
            self._write(state="failed")
            raise
        self._write(state="done")
        return "done"

    # -- discover and attach ---------------------------------------------------------------

    def _discover(self, data: dict[str, Any]) -> None:
        pool = self.s.call("pool.get_all")[0]
        data["pool_uuid"] = self.s.call("pool.get_uuid", pool)
        data["host"] = self.s.call("pool.get_master", pool)
        data["baseline"] = self._inventory()
        srs = []
        for path in self.options.luns:
            probe = self.s.call("SR.probe", data["host"], {"path": path}, "file", {"metadata": "true"})
            for uuid, name, metadata, where in _PROBE_SR.findall(probe):
                found = {"uuid": unescape(uuid), "name": unescape(name), "metadata": metadata == "true"}
                # A directory of LUNs lists each LUN's own path.
                srs.append({**found, "path": unescape(where) if where else path})
        if not srs:
            raise RunFailed(f"no SR found on {', '.join(self.options.luns)}")
        for sr in srs:
            sr["replication"] = self.replication.state(Path(sr["path"])).value
        data["srs"] = srs

    def _split(self, data: dict[str, Any]) -> None:
        """With ``split_mirrors``, split the replication of LUNs still replicating into this site.

        Without it, a LUN still being replicated into stops the run here, before anything is
        attached: two writers must never share a LUN, and splitting is the operator's decision."""
        split: list[str] = data.setdefault("split", [])
        live = (ReplicationState.REPLICATING, ReplicationState.PAUSED, ReplicationState.RESYNCING)
        waiting, to_split = [], []
        for sr in self._data("discover")["srs"]:
            if sr["path"] in split:
                continue
            state = self.replication.state(Path(sr["path"]))
            if state not in live:
                continue
            if self.options.kind == "test":
                # A test never splits (replication goes on), and a pool cannot plug a LUN still
                # being written: the test must run on a copy of it.
                raise RunFailed(
                    f"{sr['path']} is a mirror target still replicated into ({state.value}): a test failover "
                    "runs on a point-in-time copy of it, which replication leaves alone. Take one (with "
                    "farside mirror: 'farside mirror snapshot MIRROR DIR') and start a new test on DIR"
                )
            if not self.options.split_mirrors:
                waiting.append(f"{sr['path']} ({state.value})")
                continue
            to_split.append(sr)
        running = self._running_at_source({sr["uuid"] for sr in to_split})
        if running:
            # Splitting stops the source's replication for good: never while it still runs VMs on them.
            raise RunFailed(
                f"{', '.join(running)} still run in the source pool on the LUNs to split: shut them down there "
                "first; nothing was split"
            )
        for sr in to_split:
            self.replication.split(Path(sr["path"]))
            split.append(sr["path"])
            self._save()
        if waiting:
            raise RunFailed(
                f"the replication into {', '.join(waiting)} is not split: split the mirrors first, "
                "or let the run split them (split_mirrors=true)"
            )

    def _running_at_source(self, sr_uuids: set[str]) -> list[str]:
        """Names of the VMs that run in the source pool (when a session on it was given) with a
        disk on one of these SRs."""
        if self.source is None or not sr_uuids:
            return []
        srs = {ref for ref, r in self.source.call("SR.get_all_records").items() if r["uuid"] in sr_uuids}
        vdis = {ref for ref, r in self.source.call("VDI.get_all_records").items() if r["SR"] in srs}
        vbds = self.source.call("VBD.get_all_records")
        return sorted(
            r["name_label"]
            for r in self.source.call("VM.get_all_records").values()
            if r["power_state"] != "Halted" and any(vbds.get(v, {}).get("VDI") in vdis for v in r["VBDs"])
        )

    def _inventory(self) -> dict[str, list[str]]:
        return {
            cls: sorted(r["uuid"] for r in self.s.call(f"{cls}.get_all_records").values()) for cls in CHECKED_CLASSES
        }

    def _sr_by_uuid(self, uuid: str) -> str | None:
        try:
            return str(self.s.call("SR.get_by_uuid", uuid))
        except XenAPIFailure as exc:
            if exc.failure[0] == "UUID_INVALID":
                return None
            raise

    def _attach(self, data: dict[str, Any]) -> None:
        """New SRs through DR tasks; SRs this pool knows but has unplugged (failback) plugged again."""
        tasks: dict[str, str] = data.setdefault("tasks", {})
        plugged: list[str] = data.setdefault("plugged", [])
        for sr in self._data("discover")["srs"]:
            if sr["uuid"] in tasks:
                continue
            ref = self._sr_by_uuid(sr["uuid"])
            if ref is not None:
                introduced_by = self.s.call("SR.get_introduced_by", ref)
                if introduced_by != "OpaqueRef:NULL" and sr["uuid"] not in plugged:
                    if sr["uuid"] not in data.get("creating", []):
                        raise RunFailed(f"SR {sr['name']} was introduced by another run's DR task "
                                        f"{introduced_by}: clean that run up first")  # fmt: skip
                    tasks[sr["uuid"]] = introduced_by  # made by this step before an interruption
                    self._save()
                    continue
                for pbd in self.s.call("SR.get_PBDs", ref):
                    if not self.s.call("PBD.get_currently_attached", pbd):
                        if sr["uuid"] not in plugged:  # the intent first: cleanup unplugs it even
                            plugged.append(sr["uuid"])  # if the engine dies inside the plug
                            self._save()
                        self.s.call("PBD.plug", pbd)
                # Plugged all along (a server restart keeps it so): the LUN may have been copied
                # back under it; a scan finds the VDIs, and the metadata, that came with the copy.
                self.s.call("SR.scan", ref)
                continue
            data.setdefault("creating", []).append(sr["uuid"])  # the intent first: a killed engine's
            self._save()  # task is then found again (resume) or destroyed (cleanup)
            task = self.s.call("DR_task.create", "file", {"path": sr["path"]}, [sr["uuid"]])
            ref = self._sr_by_uuid(sr["uuid"])
            owner = self.s.call("SR.get_introduced_by", ref) if ref is not None else "OpaqueRef:NULL"
            if owner not in ("OpaqueRef:NULL", task):
                # A create an interrupted engine had in flight introduced the SR first: adopt its task.
                self.s.call("DR_task.destroy", task)
                task = owner
            tasks[sr["uuid"]] = task
            self._save()

    # -- metadata ------------------------------------------------------------------------------

    def _choose(self, data: dict[str, Any]) -> None:
        """Per source pool, the metadata VDI with the highest generation; never this pool's own."""
        own = self._data("discover")["pool_uuid"]
        best: dict[str, dict[str, Any]] = {}
        warnings: list[str] = data.setdefault("warnings", [])
        vdis = self.s.call("VDI.get_all_records")
        for sr in self._data("discover")["srs"]:
            ref = self._sr_by_uuid(sr["uuid"])
            for vdi, record in vdis.items() if ref else []:
                if record["SR"] != ref or record["type"] != "metadata" or not record["metadata_latest"]:
                    continue
                pool_uuid = self.s.call("VDI.read_database_pool_uuid", vdi)
                if pool_uuid == own:
                    warnings.append(f"SR {sr['name']} holds this pool's own metadata; it is not used")
                    continue
                config = record["sm_config"]
                found = {
                    "vdi": vdi,
                    "pool_uuid": pool_uuid,
                    "pool_name": config.get("farside-pool-name", ""),
                    "generation": int(config.get("farside-generation", "0")),
                    "written": config.get("farside-written", ""),
                }
                if pool_uuid not in best or found["generation"] > best[pool_uuid]["generation"]:
                    best[pool_uuid] = found
        if not best:
            raise RunFailed("no metadata of another pool was found on the attached SRs")
        wanted = self.options.source_pool
        if wanted and wanted not in best:
            pools = ", ".join(f"{m['pool_name']} ({p})" for p, m in best.items())
            raise RunFailed(f"no metadata of pool {wanted} on the attached SRs; found: {pools}")
        data["metadata"] = [m for p, m in best.items() if not wanted or p == wanted]

    def _open(self, vdi: str) -> str:
        return str(self.s.call("VDI.open_database", vdi))

    def _close(self, db: str) -> None:
        # Already gone (expired, or the server restarted): nothing to release.
        with contextlib.suppress(XenAPIFailure):
            self.s.call_as(db, "session.logout")

    def _load(self, data: dict[str, Any]) -> None:
        """vApps and VMs of each source; one VM uuid in several copies: only the newest is offered."""
        vms: dict[str, dict[str, Any]] = {}
        vapps: dict[str, dict[str, Any]] = {}
        left_out: list[str] = []
        for meta in self._data("choose")["metadata"]:
            db = self._open(meta["vdi"])
            try:
                apps = self.s.call_as(db, "VM_appliance.get_all_records")
                records = self.s.call_as(db, "VM.get_all_records")
                vdis = self.s.call_as(db, "VDI.get_all_records")
                srs = self.s.call_as(db, "SR.get_all_records")
                vbds = self.s.call_as(db, "VBD.get_all_records")
            finally:
                self._close(db)
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
                    "vcpus": int(r["VCPUs_at_startup"]), "ready": r["other_config"].get(READY_KEY, ""),
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

    def _select(self, data: dict[str, Any]) -> None:
        loaded = self._data("load")
        vms, vapps = loaded["vms"], loaded["vapps"]
        wanted = self.options.select
        if not wanted:
            chosen_apps = [u for u, a in vapps.items() if a["members"]]
            chosen_vms = [u for u, v in vms.items() if not v["appliance"]]
        else:
            chosen_apps, chosen_vms = [], []
            for item in wanted:
                apps = [u for u, a in vapps.items() if item in (u, a["name"])]
                found = [u for u, v in vms.items() if item in (u, v["name"])]
                if apps:
                    chosen_apps += apps
                elif found:
                    for uuid in found:
                        if vms[uuid]["appliance"]:
                            app = vapps[vms[uuid]["appliance"]]["name"]
                            raise RunFailed(f"VM {item} is part of vApp {app}; select the vApp")
                    chosen_vms += found
                else:
                    raise RunFailed(f"nothing called {item!r} is in the metadata")
        data.update(vapps=sorted(set(chosen_apps)), vms=sorted(set(chosen_vms)))

    def _selected_vms(self) -> list[dict[str, Any]]:
        loaded, chosen = self._data("load"), self._data("select")
        uuids = list(chosen["vms"])
        for app in chosen["vapps"]:
            uuids += loaded["vapps"][app]["members"]
        return [loaded["vms"][u] for u in uuids]

    # -- pre-checks ------------------------------------------------------------------------

    def _precheck(self, data: dict[str, Any]) -> None:
        problems: list[Problem] = []
        selected = self._selected_vms()
        here = {r["uuid"]: r for r in self.s.call("VM.get_all_records").values()}
        srs = {r["uuid"]: ref for ref, r in self.s.call("SR.get_all_records").items()}
        disks = {(r["SR"], r["location"]): r for r in self.s.call("VDI.get_all_records").values()}
        for vm in selected:
            problems += self._check_existing(vm, here.get(vm["uuid"]))
            problems += self._check_disks(vm, srs, disks)
        problems += self._check_storage()
        problems += self._check_replication()
        problems += self._check_source(selected)
        if self.options.power != "none":
            problems += self._check_capacity(selected)
        data["problems"] = [p.as_dict() for p in problems]
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise RunFailed("; ".join(f"{p.subject}: {p.text}" + (f" ({p.fix})" if p.fix else "") for p in errors))

    def _check_existing(self, vm: dict[str, Any], record: dict[str, Any] | None) -> list[Problem]:
        if record is None:
            return []
        if self.options.kind == "test":
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

    def _check_disks(
        self, vm: dict[str, Any], srs: dict[str, str], vdis: dict[tuple[str, str], dict[str, Any]]
    ) -> list[Problem]:
        """Metadata matches storage: every disk exists on an attached SR with its recorded size.
        ``srs``: this pool's SR refs by uuid; ``vdis``: its VDI records by (SR ref, location)."""
        problems = []
        for disk in vm["disks"]:
            found = vdis.get((srs.get(disk["sr"], ""), disk["location"]))
            if found is None:
                problems.append(Problem("error", vm["name"], f"disk {disk['location']} of SR {disk['sr']} is missing",
                                        "attach the LUN that holds it"))  # fmt: skip
            elif int(found["virtual_size"]) != disk["size"]:
                problems.append(Problem("error", vm["name"], f"disk {disk['location']} has another size than recorded"))
        return problems

    def _check_storage(self) -> list[Problem]:
        """assert_can_be_recovered for each selected vApp and VM, as XenCenter's storage check."""
        problems = []
        loaded, chosen = self._data("load"), self._data("select")
        items = [(loaded["vapps"][u], "VM_appliance") for u in chosen["vapps"]]
        items += [(loaded["vms"][u], "VM") for u in chosen["vms"]]
        with self._databases() as database:
            for item, cls in items:
                db = database(item["source"])
                try:
                    self.s.call_as(db, f"{cls}.assert_can_be_recovered", item["ref"], self.s.handle)
                except XenAPIFailure as exc:
                    problems.append(Problem("error", item["name"], " ".join(exc.failure), "attach the SR it needs"))
        return problems

    @contextlib.contextmanager
    def _databases(self) -> Iterator[Callable[[str], str]]:
        """Sessions on metadata VDIs, each opened at its first use and all closed at the end."""
        opened: dict[str, str] = {}

        def database(vdi: str) -> str:
            if vdi not in opened:
                opened[vdi] = self._open(vdi)
            return opened[vdi]

        try:
            yield database
        finally:
            for db in opened.values():
                self._close(db)

    def _check_replication(self) -> list[Problem]:
        problems = []
        for path in sorted({sr["path"] for sr in self._data("discover")["srs"]}):
            state = self.replication.state(Path(path))
            if state in (ReplicationState.REPLICATING, ReplicationState.RESYNCING) and self.options.kind != "test":
                problems.append(Problem("error", path, f"the LUN is still {state.value}", "split the mirror first",
                                        {"split_mirrors": "true"}))  # fmt: skip
            elif state is ReplicationState.UNKNOWN and self.options.kind != "test":
                severity = "warning" if self.options.confirm_split else "error"
                fix = "confirm that the array's mirroring is stopped (confirm_split=true)"
                problems.append(Problem(severity, path, "nobody here manages this LUN's replication", fix,
                                        {} if self.options.confirm_split else {"confirm_split": "true"}))  # fmt: skip
            elif state is ReplicationState.ERROR:
                problems.append(Problem("warning", path, "the LUN's replication reports an error"))
        return problems

    def _check_source(self, selected: list[dict[str, Any]]) -> list[Problem]:
        """Whether the VMs still run in the source pool: asked when a session on it was given;
        otherwise, when ``source_url`` is set and the address answers, the operator is warned."""
        if self.source is not None:
            problems = []
            there = {r["uuid"]: r["power_state"] for r in self.source.call("VM.get_all_records").values()}
            for vm in selected:
                state = there.get(vm["uuid"], "Halted")  # not there any more: nothing runs
                if state != "Halted":
                    problems.append(Problem("error", vm["name"], f"it is still {state} in the source pool",
                                            "shut it down there first: two copies must never run"))  # fmt: skip
            return problems
        url = self.options.source_url
        if url and source_answers(self.s, url):
            return [Problem("warning", url, "the source pool answers; its VMs may still run",
                            "make sure the source pool's VMs are shut down")]  # fmt: skip
        return []

    def _check_capacity(self, selected: list[dict[str, Any]]) -> list[Problem]:
        host = self._data("discover")["host"]
        metrics = self.s.call("host.get_metrics", host)
        free = int(self.s.call("host_metrics.get_memory_free", metrics))
        cpus = len(self.s.call("host.get_host_CPUs", host))
        needed = sum(vm["memory"] + QEMU_OVERHEAD for vm in selected)
        problems = []
        if needed > free:
            problems.append(Problem("error", "memory", f"the VMs need {needed // MIB} MiB; the host has "
                                    f"{free // MIB} MiB free", "select fewer VMs or free memory"))  # fmt: skip
        for vm in selected:
            if vm["vcpus"] > cpus:
                problems.append(Problem("error", vm["name"], f"needs {vm['vcpus']} vCPUs; the host has {cpus}"))
        return problems

    # -- recover, start, protect ------------------------------------------------------------

    @staticmethod
    def _recovered(vm: dict[str, Any], versions: dict[str, int]) -> bool:
        """Whether this VM's recovery already happened (after an interruption): uuid and version."""
        return bool(versions.get(vm["uuid"]) == vm["version"] + 1)

    def _recover(self, data: dict[str, Any]) -> None:
        """vApps first, then standalone VMs, each journaled on its own."""
        loaded, chosen = self._data("load"), self._data("select")
        done: list[str] = data.setdefault("done", [])
        # Each item's outcome, for the report's one line per action; a failed item does not stop
        # the others, and a resume tries it again.
        failed: dict[str, str] = {}
        items = [("VM_appliance", loaded["vapps"][u]) for u in chosen["vapps"]]
        items += [("VM", loaded["vms"][u]) for u in chosen["vms"]]
        versions = {r["uuid"]: int(r["version"]) for r in self.s.call("VM.get_all_records").values()}
        self._emit("recover", "progress", done=len(done), total=len(items))  # the bar's total from the start
        with self._databases() as database:
            for cls, item in items:
                if item["uuid"] in done:
                    continue
                members = [loaded["vms"][u] for u in item["members"]] if cls == "VM_appliance" else [item]
                if not all(self._recovered(vm, versions) for vm in members):
                    try:
                        self.s.call_as(database(item["source"]), f"{cls}.recover", item["ref"], self.s.handle, False)
                    except XenAPIFailure as exc:
                        failed[item["uuid"]] = " ".join(exc.failure)
                        continue
                done.append(item["uuid"])
                self._save(force=False)
                self._emit("recover", "progress", done=len(done), total=len(items))
        data["failed"] = failed
        if failed:
            names = {item["uuid"]: item["name"] for _, item in items}
            raise RunFailed("; ".join(f"{names[u]}: {error}" for u, error in failed.items()))

    def _start(self, data: dict[str, Any]) -> None:
        """By order groups, ascending, all VMs of a group at once; delays are slept inside VM.start."""
        if self.options.power == "none":
            data["skipped"] = "power option: do not start"
            return
        paused = self.options.power == "start_paused"
        results: dict[str, dict[str, Any]] = data.setdefault("vms", {})
        selected = sorted(self._selected_vms(), key=lambda vm: vm["order"])
        started = sum(1 for r in results.values() if r.get("state") == "started")
        self._emit("start", "progress", done=started, total=len(selected))  # the bar's total from the start
        with ThreadPoolExecutor(max_workers=max(len(selected), 1), thread_name_prefix="dr-start") as pool:
            for _, group in groupby(selected, key=lambda vm: vm["order"]):
                pending = [vm for vm in group if results.get(vm["uuid"], {}).get("state") != "started"]
                for vm, outcome in zip(pending, pool.map(lambda vm: self._start_one(vm, paused), pending), strict=True):
                    results[vm["uuid"]] = outcome
                self._save()
                started = sum(1 for r in results.values() if r.get("state") == "started")
                self._emit("start", "progress", done=started, total=len(selected))

    def _settled_power_state(self, ref: str) -> str:
        """The VM's power state once no operation is in flight on it: a resumed run may meet the
        VM.start (or another operation) that the interrupted engine had asked for, still going on."""
        deadline = time.monotonic() + OPERATION_WAIT_S
        while self.s.call("VM.get_current_operations", ref) and time.monotonic() < deadline:
            time.sleep(0.2)
        return str(self.s.call("VM.get_power_state", ref))

    def _start_one(self, vm: dict[str, Any], paused: bool) -> dict[str, Any]:
        began = time.time()
        ref = self.s.call("VM.get_by_uuid", vm["uuid"])
        state = self._settled_power_state(ref)
        if state == "Suspended" and self.options.kind == "test":
            # Resuming consumes the memory image, which belongs to the replica: a test never does.
            return {"state": "started", "note": "left suspended: a test failover never resumes a memory image"}
        # Halted: start it. Suspended (recovered with its memory image): resume it, so it runs.
        action = {"Halted": "VM.start", "Suspended": "VM.resume"}.get(state)
        if action is not None:
            try:
                self.s.call(action, ref, paused, False)
            except XenAPIFailure as exc:
                if exc.failure[0] != "OTHER_OPERATION_IN_PROGRESS" or self._settled_power_state(ref) == state:
                    return {"state": "failed", "error": " ".join(exc.failure)}
        outcome: dict[str, Any] = {"state": "started", "seconds": round(time.time() - began, 3)}
        if vm["ready"] and not paused:
            deadline = time.time() + READY_TIMEOUT_S
            while vm["ready"].encode() not in self.s.serial(vm["uuid"]):
                if time.time() > deadline:
                    outcome["ready"] = f"'{vm['ready']}' not seen within {READY_TIMEOUT_S:.0f} s"
                    return outcome
                time.sleep(READY_POLL_S)
            outcome["ready_seconds"] = round(time.time() - began, 3)
        return outcome

    def _protect(self, data: dict[str, Any]) -> None:
        """After a failover or failback that started VMs, this pool's metadata goes onto the SRs."""
        if self.options.kind == "test" or self.options.power == "none":
            data["skipped"] = "nothing was started for good"
            return
        enabled: list[str] = data.setdefault("enabled", [])
        for sr in self._data("discover")["srs"]:
            ref = self._sr_by_uuid(sr["uuid"])
            if ref is None or sr["uuid"] in enabled:
                continue
            if self.s.call("SR.get_introduced_by", ref) != "OpaqueRef:NULL":
                continue  # no recovered VM uses it: release forgets it, so this pool's metadata goes elsewhere
            try:
                self.s.call("SR.enable_database_replication", ref)
                enabled.append(sr["uuid"])
            except XenAPIFailure as exc:
                data.setdefault("warnings", []).append(f"{sr['name']}: {' '.join(exc.failure)}")
            self._save()

    def _release(self, data: dict[str, Any]) -> None:
        """A failover or failback keeps what it recovered: its DR tasks go (SRs in use stay)."""
        if self.options.kind == "test":
            data["skipped"] = "a test failover releases everything at cleanup"
            return
        self._destroy_tasks()

    def _destroy_tasks(self) -> None:
        for task in self._data("attach").get("tasks", {}).values():
            try:
                self.s.call("DR_task.destroy", task)
            except XenAPIFailure as exc:
                if exc.failure[0] != "HANDLE_INVALID":  # destroyed before an interruption
                    raise

    # -- report and cleanup -------------------------------------------------------------------

    def _report(self, data: dict[str, Any]) -> None:
        self._write_report("succeeded")

    def _write_report(self, outcome: str) -> None:
        text, report = render(self.options, self.journal, outcome)
        self._write(report=text, report_json=json.dumps(report, sort_keys=True), finished=now())

    def cleanup(self) -> None:
        """Destroy the DR tasks (SRs in use stay). A test failover also removes all it recovered,
        the networks recovery created and the SRs it introduced, then checks the pool is as before."""
        with self._claimed():
            self._reload(("created", "running", "paused", "failed", "done", "cleanup failed"))
            self._cleanup()

    def _cleanup(self) -> None:
        entry = self.journal.setdefault("cleanup", {"state": "pending", "data": {}})
        entry.update(state="started", started=now())
        self._save()
        test = self.options.kind == "test"
        # Only what the run made: a VM or vApp the pool had before the test (its baseline) is not the test's.
        before = self._data("discover").get("baseline") or {}
        recovering = self.journal.get("recover") if test else None
        candidates = [vm for vm in self._selected_vms() if vm["uuid"] not in before.get("VM", [])] \
            if recovering is not None else []  # fmt: skip
        done = set(recovering["data"].get("done", [])) if recovering is not None else set()
        records = self.s.call("VM.get_all_records") if candidates else {}
        here = {r["uuid"]: (ref, r["power_state"], int(r["version"])) for ref, r in records.items()}
        recovered = []
        for vm in candidates:
            if vm["uuid"] not in here:
                continue  # not recovered, or destroyed by a cleanup before this one
            ref, power_state, version = here[vm["uuid"]]
            # This run's copy: journaled as recovered (its own uuid or its vApp's), or, for the item
            # in flight when the engine died, at its source version + 1 and never started running.
            ours = vm["uuid"] in done or vm["appliance"] in done
            if not ours and not (version == vm["version"] + 1 and power_state != "Running"):
                continue
            recovered.append(vm["uuid"])
            if power_state == "Suspended" and self.s.call("VM.get_suspend_VDI", ref) != "OpaqueRef:NULL":
                # The memory image belongs to the replica: forget its record, so that the
                # hard shutdown below has nothing to delete (nothing replicated is ever lost).
                self.s.call("VDI.forget", self.s.call("VM.get_suspend_VDI", ref))
            if power_state != "Halted":
                self.s.call("VM.hard_shutdown", ref)
            self.s.call("VM.destroy", ref)
        if test and "select" in self.journal:
            for uuid in self._data("select")["vapps"]:
                if uuid in before.get("VM_appliance", []) or uuid not in done:
                    continue
                with contextlib.suppress(XenAPIFailure):  # gone already: a cleanup run before this one
                    self.s.call("VM_appliance.destroy", self.s.call("VM_appliance.get_by_uuid", uuid))
            for ref, net in self.s.call("network.get_all_records").items():
                created = net["other_config"].get("farside-created-by") == "recovery"
                if created and not net["VIFs"] and net["uuid"] not in before.get("network", []):
                    self.s.call("network.destroy", ref)
        attach = self._data("attach")
        tasks = attach.get("tasks", {})
        for uuid in attach.get("creating", []):  # created, but the engine died before journaling it
            ref = self._sr_by_uuid(uuid)
            if uuid not in tasks and ref is not None and uuid not in before.get("SR", []):
                owner = self.s.call("SR.get_introduced_by", ref)
                if owner != "OpaqueRef:NULL":
                    tasks[uuid] = owner
        self._destroy_tasks()
        if test:
            for uuid in list(tasks) + self._data("attach").get("plugged", []):
                ref = self._sr_by_uuid(uuid)
                if ref is None:
                    continue
                for pbd in self.s.call("SR.get_PBDs", ref):
                    self.s.call("PBD.unplug", pbd)
                if uuid in tasks:
                    self.s.call("SR.forget", ref)
            baseline = self._data("discover").get("baseline")
            if baseline is not None:
                now_state = self._inventory()
                differences = {
                    cls: {"added": sorted(set(now_state[cls]) - set(baseline[cls])),
                          "removed": sorted(set(baseline[cls]) - set(now_state[cls]))}
                    for cls in CHECKED_CLASSES if now_state[cls] != baseline[cls]
                }  # fmt: skip
                entry["data"]["differences"] = differences
                if differences:
                    entry.update(state="failed", error=f"the pool differs from before the test: {changes(differences)}")
                    self._save()
                    self._write(state="cleanup failed")
                    raise RunFailed(entry["error"])
        entry.update(state="done", finished=now())
        self._save()
        self._write(state="cleaned up")

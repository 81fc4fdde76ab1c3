"""The flags of ``farside dr failover|failback|test`` and the DR_run options they make."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from farside.cli.dr.failures import usage

# --power's words, and the run option each stands for.
POWER = {"start": "start", "paused": "start_paused", "none": "none"}
# The steps a wizard stops after, to show what was found and ask (docs/dr.md).
WIZARD_PAUSES = "discover,load,precheck"


def add_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("storage")
    g.add_argument("--lun", action="append", default=[], metavar="PATH", help="a LUN directory (repeatable)")
    g.add_argument(
        "--lun-dir", action="append", default=[], metavar="DIR", help="a directory of LUN directories, all searched"
    )
    g.add_argument(
        "--split-mirrors",
        action="store_true",
        help="split the farside mirrors still replicating into these LUNs before attaching them",
    )
    g.add_argument(
        "--confirm-split",
        action="store_true",
        help="confirm the storage array's mirroring is stopped for LUNs farside does not manage",
    )
    g = p.add_argument_group("what to recover")
    g.add_argument("--source-pool", metavar="UUID", help="use only this pool's metadata (default: every pool found)")
    g.add_argument("--all", action="store_true", help="every vApp and standalone VM in the metadata")
    g.add_argument("--vapp", action="append", default=[], metavar="NAME|UUID", help="a vApp (repeatable)")
    g.add_argument("--vm", action="append", default=[], metavar="NAME|UUID", help="a VM outside vApps (repeatable)")
    g.add_argument(
        "--power",
        choices=sorted(POWER),
        help="after recovery: start, paused, none (default: start; a test failover: paused)",
    )
    g = p.add_argument_group(
        "fencing (a failover or failback needs a proof that the other site no longer runs the VMs)"
    )
    g.add_argument(
        "--declare-site-down",
        metavar="NAME",
        help="declare the source site down, by its pool's name (refused while --source-server answers); "
        "the other proofs: a session on the source pool (--source-server), or the storage's fence",
    )
    g = p.add_argument_group("how")
    g.add_argument("--yes", action="store_true", help="ask nothing: the flags say it all (as when not on a terminal)")
    g.add_argument("--json", action="store_true", help="print the report as JSON (implies --yes)")


@dataclass(frozen=True)
class Request:
    """What the operator asked for on the command line, checked."""

    kind: str
    luns: list[str]
    all: bool
    vapps: list[str]
    vms: list[str]
    power: str | None  # a run option (start, start_paused, none), or None: not said
    split_mirrors: bool
    confirm_split: bool
    source_pool: str
    declare_site_down: str = ""

    @property
    def selection(self) -> list[str]:
        return [*self.vapps, *self.vms]

    @property
    def chosen(self) -> bool:
        """Whether the flags say what to recover."""
        return self.all or bool(self.selection)


def request(args: argparse.Namespace, kind: str) -> Request:
    """The request of these flags; bad combinations are refused with what to do instead."""
    if args.all and (args.vapp or args.vm):
        raise usage("--all already selects every vApp and VM: leave out --vapp/--vm, or --all")
    power = POWER[args.power] if args.power else None
    if kind == "test" and power == "start":
        raise usage("a test failover never starts VMs running: use --power paused or --power none")
    if kind == "test" and args.split_mirrors:
        raise usage("a test failover never splits mirrors: test on a snapshot of the mirror (farside mirror snapshot)")
    declared = (args.declare_site_down or "").strip()
    if kind == "test" and declared:
        raise usage("a test failover starts nothing for good: it needs no --declare-site-down")
    # The server opens the paths: make relative ones mean what they mean here.
    luns = [os.path.abspath(p) for p in [*args.lun, *args.lun_dir]]
    for path in luns:
        if ":" in path:
            raise usage(f"{path}: a LUN path cannot hold ':' (the run keeps its LUNs ':'-separated)")
    return Request(
        kind=kind,
        luns=luns,
        all=args.all,
        vapps=list(args.vapp),
        vms=list(args.vm),
        power=power,
        split_mirrors=args.split_mirrors,
        confirm_split=args.confirm_split,
        source_pool=(args.source_pool or "").strip(),
        declare_site_down=declared,
    )


def require_scripted(req: Request) -> None:
    """Without a terminal to ask on, the flags must say everything a choice needs."""
    if not req.luns:
        raise usage("say where the LUNs are: pass --lun PATH (repeatable) or --lun-dir DIR")
    if not req.chosen:
        raise usage("say what to recover: pass --all, or --vapp NAME and/or --vm NAME (repeatable)")


def run_options(req: Request, source_url: str, pause: bool) -> dict[str, str]:
    """The DR_run options for the request; ``pause``: stop after each step a wizard shows."""
    options = {"luns": ":".join(req.luns), "select": ",".join(req.selection)}
    if req.power is not None:
        options["power"] = req.power
    if req.confirm_split:
        options["confirm_split"] = "true"
    if req.split_mirrors:
        options["split_mirrors"] = "true"
    if req.source_pool:
        options["source_pool"] = req.source_pool
    if source_url:
        options["source_url"] = source_url
    if req.declare_site_down:
        options["declare_site_down"] = req.declare_site_down
    if pause:
        options["pause_after"] = WIZARD_PAUSES
    return options

"""``farside dr``: failover, failback and test failover from a terminal (a wizard, or a script),
and the runs of a pool: list, report, resume, cleanup. See docs/cli-dr.md."""

from __future__ import annotations

import argparse

from farside.cli.dr import commands, connection, options

KINDS = {
    "failover": "recover the VMs of a lost site here, from its mirrored LUNs",
    "failback": "bring the VMs back to the primary site, from the DR site's metadata",
    "test": "recover without disturbing anything (paused or halted), then clean up",
}


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subcommands.add_parser(
        "dr",
        help="disaster recovery: failover, failback, test failover; runs, report, resume, cleanup",
        description="Disaster recovery from a terminal: a wizard on a TTY, fully scriptable otherwise. "
        "See docs/cli-dr.md.",
    )
    sub = p.add_subparsers(dest="dr_command", required=True, metavar="ACTION")
    for kind, help_ in KINDS.items():
        c = sub.add_parser(kind, help=help_, description=help_)
        connection.add_flags(c, source=True)
        options.add_flags(c)
        c.set_defaults(run=commands.start(kind))

    c = sub.add_parser("runs", help="the DR runs of the target pool", description="The DR runs of the target pool.")
    connection.add_flags(c, source=False)
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(run=commands.runs)

    c = sub.add_parser("report", help="a run's report", description="A run's report (text, or --json).")
    c.add_argument("run_id", metavar="RUN", help="the run's uuid, or a unique beginning of it")
    connection.add_flags(c, source=False)
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.set_defaults(run=commands.report)

    help_ = "carry an interrupted or failed run on from where it stopped (the engine runs here)"
    c = sub.add_parser("resume", help=help_, description=help_)
    c.add_argument("run_id", metavar="RUN", help="the run's uuid, or a unique beginning of it")
    connection.add_flags(c, source=True)
    c.add_argument("--confirm-split", action="store_true", help="apply this pre-check fix before going on")
    c.add_argument("--split-mirrors", action="store_true", help="let the run split the mirrors before going on")
    c.add_argument("--declare-site-down", metavar="NAME", help="declare the source site down (the run's fencing proof)")
    c.add_argument("--yes", action="store_true", help="ask nothing")
    c.add_argument("--json", action="store_true", help="print the report as JSON (implies --yes)")
    c.set_defaults(run=commands.resume)

    help_ = "let go of what a run attached; a test failover's recovered VMs are removed and the pool compared"
    c = sub.add_parser("cleanup", help=help_, description=help_)
    c.add_argument("run_id", metavar="RUN", help="the run's uuid, or a unique beginning of it")
    connection.add_flags(c, source=False)
    c.set_defaults(run=commands.cleanup)

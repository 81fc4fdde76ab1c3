"""``farside watchdog DATA_DIR``: the per-host fencing watchdog of one pool (the server starts it).

It outlives the server on purpose: while the server is stopped, frozen or gone, it kills the VMs
whose LUN leases are about to lapse, then exits once no VM of the pool writes into a LUN and no
server runs (docs/storage.md, "Fencing").
"""

from __future__ import annotations

import argparse
import functools
import logging
from pathlib import Path

from farside.config import Fencing, ServerConfig
from farside.hypervisor.qemu import writers
from farside.storage import watchdog


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "watchdog",
        help="kill a pool's VMs before their LUN leases lapse (started by 'farside server')",
        description="Fence one pool's VMs on this host, whether or not its server runs.",
    )
    p.add_argument("data_dir", type=Path, help="the pool's data directory")
    p.add_argument("--pool-uuid", required=True, help="the pool whose leases its VMs need")
    p.add_argument("--lease-ttl", type=float, default=Fencing.lease_ttl_s, help="seconds a lease lives")
    p.add_argument("--renew-interval", type=float, default=Fencing.renew_interval_s, help="seconds between renewals")
    p.add_argument("--fence-margin", type=float, default=Fencing.fence_margin_s, help="fence this long before expiry")
    p.add_argument("--interval", type=float, default=Fencing.watchdog_interval_s, help="seconds between checks")
    p.add_argument("--kill-timeout", type=float, default=Fencing.kill_timeout_s, help="seconds a kill may take")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logging.getLogger().setLevel(logging.INFO)
    fencing = Fencing(
        lease_ttl_s=args.lease_ttl,
        renew_interval_s=args.renew_interval,
        fence_margin_s=args.fence_margin,
        watchdog_interval_s=args.interval,
        kill_timeout_s=args.kill_timeout,
    )
    run_root = ServerConfig(args.data_dir).run_dir
    if not run_root.is_dir():
        raise ValueError(f"{args.data_dir} has no run directory: is it a pool's data directory?")
    with watchdog.sole(run_root) as alone:
        if not alone:
            return 0  # another watchdog watches this pool already
        dog = watchdog.Watchdog(
            args.pool_uuid,
            fencing,
            functools.partial(writers.writers, run_root),
            writers.kill,
            functools.partial(writers.driver_running, run_root),
        )
        dog.run()
    return 0

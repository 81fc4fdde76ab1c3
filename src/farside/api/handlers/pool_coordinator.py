"""pool: the coordinator messages, answered as xapi answers them on a pool of one host.

The only host is the coordinator, has no supporters to recover, and writes its database on every
commit (SQLite, synchronously), so there is nothing to hand over, recover or flush.
"""

from __future__ import annotations

from farside.api.context import Context
from farside.api.registry import handles


@handles("pool.designate_new_master")
def designate_new_master(ctx: Context, host: str) -> str:
    """The coordinator designated again is a no-op in xapi; no other host exists to take over."""
    with ctx.db.read() as tx:
        tx.check("host", host)  # the pool's only host, so the coordinator already
    return ""


@handles("pool.recover_slaves")
def recover_slaves(ctx: Context) -> list[str]:
    """The supporters recovered: none, as a Farside pool has none."""
    return []


@handles("pool.sync_database")
def sync_database(ctx: Context) -> str:
    """Every commit is already on disk (and on the metadata VDIs): nothing is left to flush."""
    return ""


@handles("pool.detect_nonhomogeneous_external_auth")
def detect_nonhomogeneous_external_auth(ctx: Context, pool: str) -> str:
    """One host cannot disagree with itself: no alert to raise."""
    with ctx.db.read() as tx:
        tx.check("pool", pool)
    return ""

"""Fence: before anything is split, attached or started, the run knows that the other site does not
run the VMs it is about to start, in one of three ways (each recorded in the journal and report):

* ``session``: a live session on the source pool (``farside dr --source-server``): the split step
  checks the power states of the VMs on the LUNs to split and has that pool release the split SRs,
  the pre-check refuses selected VMs still running there;
* ``storage``: the storage adapter reports, for every LUN, that the other side can no longer write;
* ``declared``: the operator declares the source site down (``declare_site_down``), refused while
  its address (``source_url``) answers XenAPI; the pre-check holds the name to the metadata's pool.

A test failover starts nothing for good: it needs no proof.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from farside.dr.context import RunContext, RunFailed
from farside.dr.session import answers_xenapi

WAYS = (
    "give a session on the source pool (farside dr --source-server URL), "
    "let the storage show that the other side can no longer write (a mirror whose other side no pool holds), "
    "or declare the source site down (farside dr --declare-site-down NAME, the DR_run option "
    "declare_site_down=NAME, the console's 'the other site is down' box), NAME being its pool's name"
)


def run(ctx: RunContext, data: dict[str, Any]) -> None:
    if ctx.options.kind == "test":
        data.update(how="none", proof="a test failover starts nothing for good: no fencing needed")
        return
    declared, url = ctx.options.declare_site_down, ctx.options.source_url
    if declared and ctx.source is not None:
        raise RunFailed(f"the site declared down ({declared}) answers: this run holds a live session on it. "
                        "Leave out the declaration, or the session")  # fmt: skip
    if declared and url and answers_xenapi(url):
        raise RunFailed(f"the site declared down ({declared}) answers XenAPI at {url}: a site that answers is not "
                        "down. Shut its VMs down and give a session on it (--source-server) instead")  # fmt: skip
    if ctx.source is not None:
        pool = ctx.source.call("pool.get_all")[0]
        name = ctx.source.call("pool.get_name_label", pool)
        data.update(how="session", proof=f"a live session on the source pool {name}: its VMs' power states "
                    "are checked before anything is split or recovered, and it releases the SRs split")  # fmt: skip
        return
    fenced = {sr["path"]: ctx.replication.fenced(Path(sr["path"])) for sr in ctx.data("discover")["srs"]}
    if all(fenced.values()):
        data.update(how="storage", proof="; ".join(sorted(set(fenced.values()))))
        return
    if declared:
        checked = f"{url} does not answer XenAPI" if url else "no source address (source_url) to check"
        data.update(how="declared", site=declared, proof=f"the operator declared site {declared} down ({checked})")
        return
    unproven = ", ".join(path for path, proof in fenced.items() if not proof)
    raise RunFailed(f"nothing shows that the source site no longer runs the VMs on {unproven}: a {ctx.options.kind} "
                    f"needs one proof of it: {WAYS}")  # fmt: skip

"""Discover: which SRs the LUNs hold (SR.probe), and what the pool holds before the run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from xml.sax.saxutils import unescape

from farside.dr.context import RunContext, RunFailed

_PROBE_SR = re.compile(
    r"<SR>.*?<UUID>(.*?)</UUID>.*?<name_label>(.*?)</name_label>.*?<pool_metadata_detected>(\w+)"
    r"</pool_metadata_detected>(?:\s*<path>(.*?)</path>)?",
    re.S,
)


def run(ctx: RunContext, data: dict[str, Any]) -> None:
    pool = ctx.s.call("pool.get_all")[0]
    data["pool_uuid"] = ctx.s.call("pool.get_uuid", pool)
    data["host"] = ctx.s.call("pool.get_master", pool)
    data["baseline"] = ctx.inventory()
    srs = []
    for path in ctx.options.luns:
        probe = ctx.s.call("SR.probe", data["host"], {"path": path}, "file", {"metadata": "true"})
        for uuid, name, metadata, where in _PROBE_SR.findall(probe):
            found = {"uuid": unescape(uuid), "name": unescape(name), "metadata": metadata == "true"}
            # A directory of LUNs lists each LUN's own path.
            srs.append({**found, "path": unescape(where) if where else path})
    if not srs:
        raise RunFailed(f"no SR found on {', '.join(ctx.options.luns)}")
    for sr in srs:
        sr["replication"] = ctx.replication.state(Path(sr["path"])).value
    data["srs"] = srs

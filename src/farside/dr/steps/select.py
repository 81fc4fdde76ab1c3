"""Select: the vApps and VMs the options name (none named: all vApps with members and all lone VMs)."""

from __future__ import annotations

from typing import Any

from farside.dr.context import RunContext, RunFailed


def run(ctx: RunContext, data: dict[str, Any]) -> None:
    loaded = ctx.data("load")
    vms, vapps = loaded["vms"], loaded["vapps"]
    wanted = ctx.options.select
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

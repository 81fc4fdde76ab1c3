"""The summary of a DR run, as XenCenter's summary report has it plus timings, as text and JSON."""

from __future__ import annotations

import datetime as dt
from typing import Any

from farside.dr.plan import STEPS, TITLES_BY_KIND, Options
from farside.model.types import parse_datetime

POWER = {"start": "Start", "start_paused": "Start paused", "none": "Do not start"}


def metadata_age(written: str) -> float | None:
    """Seconds since a metadata VDI was written (``farside-written``), None when unknown."""
    try:
        moment = parse_datetime(written)
    except ValueError:
        return None
    return (dt.datetime.now(dt.UTC) - moment).total_seconds()


def _ago(age: float | None) -> str:
    """How long before the report a metadata VDI was written; a time ahead of this host's clock is
    "in the future" (one of the clocks is wrong), never a negative age."""
    if age is None:
        return ""
    if age < 0:
        return " (in the future: this host's clock or the source's is wrong)"
    return f" ({age:.0f} s before this report)"


def render(options: Options, journal: dict[str, Any], outcome: str) -> tuple[str, dict[str, Any]]:
    """(text, JSON-ready dict) of a run's journal."""
    data = {name: entry.get("data", {}) for name, entry in journal.items()}
    srs = data.get("discover", {}).get("srs", [])
    metadata = data.get("choose", {}).get("metadata", [])
    fence = data.get("fence", {})
    loaded = data.get("load", {})
    chosen = data.get("select", {})
    warnings = list(data.get("choose", {}).get("warnings", [])) + list(data.get("protect", {}).get("warnings", []))
    warnings += list(data.get("recover", {}).get("clamped", {}).values())
    warnings += [f"left out (an older copy): {item}" for item in loaded.get("left_out", [])]
    warnings += [f"{p['subject']}: {p['text']}" for p in data.get("precheck", {}).get("problems", [])
                 if p["severity"] == "warning"]  # fmt: skip
    groups: dict[str, list[str]] = {}
    for uuid in chosen.get("vapps", []):
        app = loaded["vapps"][uuid]
        in_order = sorted(app["members"], key=lambda m: (loaded["vms"][m]["order"], loaded["vms"][m]["name"]))
        members = [loaded["vms"][m]["name"] for m in in_order]
        pool = next((v["pool_name"] for v in loaded["vms"].values() if v["appliance"] == uuid), "?")
        groups.setdefault(pool, []).append(f"vApp {app['name']}: {', '.join(members)}")
    for uuid in chosen.get("vms", []):
        vm = loaded["vms"][uuid]
        groups.setdefault(vm["pool_name"], []).append(f"VM {vm['name']}")
    order = {name: i for i, name in enumerate((*STEPS, "cleanup"))}
    steps = [
        {"step": name, "state": entry.get("state"), "seconds": entry.get("seconds"), "error": entry.get("error", "")}
        for name, entry in sorted(journal.items(), key=lambda item: order.get(item[0], len(order)))
        if name != "report"  # the step writing this very report
    ]
    ages = {m["pool_name"]: metadata_age(m["written"]) for m in metadata}
    report = {
        "kind": options.kind,
        "outcome": outcome,
        "srs": [{"uuid": s["uuid"], "name": s["name"], "path": s["path"]} for s in srs],
        "metadata": metadata,
        "metadata_age_seconds": ages,
        "selected": groups,
        "power": options.power,
        "srs_introduced": sorted(data.get("attach", {}).get("tasks", {})),
        "warnings": warnings,
        "fencing": {"how": fence.get("how", ""), "proof": fence.get("proof", "")},
        "steps": steps,
        "started": data.get("vms", {}),
        "start": data.get("start", {}).get("vms", {}),
        "total_seconds": round(sum(s["seconds"] or 0 for s in steps), 3),
    }
    lines = [f"{TITLES_BY_KIND[options.kind]} ({outcome})", "", "Selected SRs:"]
    lines += [f"  • {s['name']} ({s['uuid']}) at {s['path']}" for s in srs] or ["  None"]
    if fence.get("proof"):
        lines += ["", f"Fencing: {fence['proof']}"]
    lines += ["", "Metadata used:"]
    for m in metadata:
        age = ages.get(m["pool_name"])
        lines.append(f"  • {m['pool_name']}: generation {m['generation']}, written {m['written']}{_ago(age)}")
    lines += ["", "Selected VMs and vApps, grouped by pool:"]
    for pool, items in groups.items():
        lines.append(f"  • {pool}")
        lines += [f"    • {item}" for item in items]
    lines += ["", f"Power state after recovery: {POWER[options.power]}"]
    introduced = report["srs_introduced"]
    lines.append(f"SRs introduced during this run: {', '.join(introduced) if introduced else 'None'}")
    lines.append("Warnings: " + ("None" if not warnings else ""))
    lines += [f"  • {w}" for w in warnings]
    lines.append("")
    for s in steps:
        result = (
            "Succeeded" if s["state"] == "done" else f"Failed: {s['error']}" if s["state"] == "failed" else s["state"]
        )
        seconds = f" ({s['seconds']:.2f} s)" if s["seconds"] is not None else ""
        lines.append(f"{s['step']} - {result}{seconds}")
    actions = _actions(data)
    report["actions"] = actions
    if actions:
        lines += ["", "Actions:"]
        lines += [f"  {a['action']} - {a['result']}" + (f": {a['message']}" if a["message"] else "") for a in actions]
    lines.append(f"Total: {report['total_seconds']:.2f} s")
    return "\n".join(lines) + "\n", report


def _actions(data: dict[str, Any]) -> list[dict[str, str]]:
    """One line per action, as XenCenter's summary lists them: each recovery, then each start."""
    loaded, chosen = data.get("load", {}), data.get("select", {})
    recover, start = data.get("recover", {}), data.get("start", {})
    if not recover:
        return []
    done, failed = set(recover.get("done", [])), recover.get("failed", {})
    actions = []
    items = [(f"vApp {loaded['vapps'][u]['name']}", u) for u in chosen.get("vapps", [])]
    items += [(f"VM {loaded['vms'][u]['name']}", u) for u in chosen.get("vms", [])]
    for label, uuid in items:
        if uuid in done or uuid in failed:
            result = "Succeeded" if uuid in done else "Failed"
            actions.append({"action": f"Recover {label}", "result": result, "message": failed.get(uuid, "")})
    for uuid, outcome in start.get("vms", {}).items():
        name = loaded["vms"].get(uuid, {}).get("name", uuid)
        message = outcome.get("error", "") or outcome.get("ready", "") or outcome.get("note", "")
        result = "Succeeded" if outcome.get("state") == "started" else "Failed"
        actions.append({"action": f"Start VM {name}", "result": result, "message": message})
    return actions

"""The DR wizard on a terminal: at each pause of the run it shows what was found and asks, as
XenCenter's wizard does page by page: the SRs and their replication, the source pools and the
age of their metadata, the vApps and VMs to tick, the power option, the pre-check and its fixes,
the last word before recovery; and before a test failover's cleanup, a moment to look."""

from __future__ import annotations

from typing import Any

from rich.prompt import Confirm, IntPrompt, Prompt

from farside.cli.dr.driver import Drive
from farside.cli.dr.options import POWER
from farside.cli.dr.tables import age, show
from farside.dr.plan import FIX_ACTIONS, TITLES_BY_KIND
from farside.dr.report import metadata_age

LIVE = ("replicating", "paused", "resyncing")
POWER_WORDS = {"start": "start them", "start_paused": "start them paused", "none": "leave them halted"}
QUESTIONS = {
    "confirm_split": "Do you confirm the storage array no longer mirrors into these LUNs?",
    "split_mirrors": "Split the mirrors still replicating into these LUNs now?",
}


def checklist(d: Drive, labels: list[str], ticked: set[int]) -> set[int]:
    """A numbered checklist: the operator toggles items by number until Enter; at least one stays."""
    ticked = set(ticked)
    while True:
        for i, label in enumerate(labels, 1):
            d.out.print(f"  {i:>2} [{'x' if i in ticked else ' '}] {label}", markup=False, highlight=False)
        answer = Prompt.ask(
            'Toggle by number (e.g. "1 3"), "all" or "none"; Enter when done',
            console=d.out,
            default="",
            show_default=False,
        ).strip()
        if not answer:
            if ticked:
                return ticked
            d.out.print("Tick at least one item.")
            continue
        if answer == "all":
            ticked = set(range(1, len(labels) + 1))
            continue
        if answer == "none":
            ticked = set()
            continue
        numbers = answer.replace(",", " ").split()
        if not all(n.isdigit() and 1 <= int(n) <= len(labels) for n in numbers):
            d.out.print(f"Numbers from 1 to {len(labels)}, please.")
            continue
        ticked ^= {int(n) for n in numbers}


class Wizard:
    def __init__(self, d: Drive) -> None:
        self.d = d
        self.out = d.out

    # -- pauses ----------------------------------------------------------------------------

    def at_pause(self, ref: str, step: str) -> bool:
        journal, options = self.d.journal(ref), self.d.options(ref)
        kind = str(self.d.session.call("DR_run.get_kind", ref))
        if step == "discover":
            return self._srs(ref, kind, journal, options)
        if step == "load":
            return self._choose(ref, kind, journal, options)
        if step == "precheck":
            return self._last_word(kind, journal, options)
        return True

    def _srs(self, ref: str, kind: str, journal: dict[str, Any], options: dict[str, str]) -> bool:
        srs = journal["discover"]["data"]["srs"]
        rows = [(s["name"], s["uuid"], s["path"], "yes" if s["metadata"] else "no", s["replication"]) for s in srs]
        show(self.out, "Storage found", ["SR", "UUID", "LUN", "metadata", "replication"], rows)
        live = [s["path"] for s in srs if s["replication"] in LIVE]
        if live and kind != "test" and options.get("split_mirrors") != "true":
            self.out.print(
                "These LUNs are still replicated into; they cannot be attached until their mirrors are split: "
                + ", ".join(live),
                markup=False,
            )
            if not Confirm.ask(QUESTIONS["split_mirrors"], console=self.out, default=False):
                return False
            self.d.set_options(ref, split_mirrors="true")
        if not any(s["metadata"] for s in srs):
            self.out.print("None of these SRs holds pool metadata: there may be nothing to recover.")
        return Confirm.ask("Attach these SRs and read the pool metadata on them?", console=self.out, default=True)

    def _choose(self, ref: str, kind: str, journal: dict[str, Any], options: dict[str, str]) -> bool:
        metadata = journal["choose"]["data"]["metadata"]
        rows = [
            (i, m["pool_name"], m["pool_uuid"], m["generation"], m["written"], age(metadata_age(m["written"])))
            for i, m in enumerate(metadata, 1)
        ]
        headers = ["#", "pool", "uuid", "generation", "written", "age"]
        show(self.out, "Source pools (their newest metadata)", headers, rows)
        if len(metadata) > 1 and not options.get("source_pool"):
            number = IntPrompt.ask(
                "Recover from which pool?", console=self.out, choices=[str(i) for i in range(1, len(metadata) + 1)]
            )
            self.d.set_options(ref, source_pool=metadata[number - 1]["pool_uuid"])
            return True  # the run loads that pool's VMs again and stops here once more
        loaded = journal["load"]["data"]
        for item in loaded.get("left_out", []):
            self.out.print(f"left out (an older copy): {item}", markup=False)
        items = self._items(loaded)
        if not items:
            self.out.print("The metadata holds no vApp or VM to recover.")
            return False
        self.out.print("\nvApps and VMs to recover:")
        ticked = checklist(self.d, [label for _, label in items], self._preticked(items, loaded))
        select = ",".join(items[i - 1][0] for i in sorted(ticked))
        power = self._power(kind, options)
        self.d.set_options(ref, select=select, power=power)
        return True

    @staticmethod
    def _items(loaded: dict[str, Any]) -> list[tuple[str, str]]:
        """(uuid, label) of each vApp with members, then each VM outside vApps, by name."""
        vms, vapps = loaded["vms"], loaded["vapps"]
        items = []
        for uuid, app in sorted(vapps.items(), key=lambda kv: kv[1]["name"]):
            if app["members"]:
                members = ", ".join(sorted(vms[m]["name"] for m in app["members"]))
                pool = vms[app["members"][0]]["pool_name"]
                items.append((uuid, f"vApp {app['name']}: {members}  ({pool})"))
        for uuid, vm in sorted(vms.items(), key=lambda kv: kv[1]["name"]):
            if not vm["appliance"]:
                items.append((uuid, f"VM {vm['name']}  ({vm['pool_name']}, {vm['memory'] >> 20} MiB)"))
        return items

    def _preticked(self, items: list[tuple[str, str]], loaded: dict[str, Any]) -> set[int]:
        wishes = self.d.wishes
        if wishes is None or not wishes.selection:
            return set(range(1, len(items) + 1))
        names = {u: a["name"] for u, a in loaded["vapps"].items()} | {u: v["name"] for u, v in loaded["vms"].items()}
        wanted = set(wishes.selection)
        return {i for i, (uuid, _) in enumerate(items, 1) if uuid in wanted or names[uuid] in wanted}

    def _power(self, kind: str, options: dict[str, str]) -> str:
        if self.d.wishes is not None and self.d.wishes.power is not None:
            return self.d.wishes.power
        words = ["paused", "none"] if kind == "test" else ["start", "paused", "none"]
        current = options.get("power") or ("start_paused" if kind == "test" else "start")
        default = next(w for w in words if POWER[w] == current)
        self.out.print("\nAfter recovery: " + "; ".join(f"{w}: {POWER_WORDS[POWER[w]]}" for w in words))
        return POWER[Prompt.ask("Power option", console=self.out, choices=words, default=default)]

    def _last_word(self, kind: str, journal: dict[str, Any], options: dict[str, str]) -> bool:
        self._problems(journal)
        chosen = journal["select"]["data"]
        loaded = journal["load"]["data"]
        vms = len(chosen["vms"]) + sum(len(loaded["vapps"][u]["members"]) for u in chosen["vapps"])
        power = options.get("power") or ("start_paused" if kind == "test" else "start")
        self.out.print(
            f"\nReady: {TITLES_BY_KIND[kind].lower()} of {len(chosen['vapps'])} vApp(s) and "
            f"{len(chosen['vms'])} other VM(s), {vms} VM(s) in all; then {POWER_WORDS[power]}.",
            markup=False,
        )
        return Confirm.ask(f"Go ahead with the {TITLES_BY_KIND[kind].lower()}?", console=self.out, default=False)

    def _problems(self, journal: dict[str, Any]) -> list[dict[str, Any]]:
        problems: list[dict[str, Any]] = journal.get("precheck", {}).get("data", {}).get("problems", [])
        if problems:
            rows = [(p["severity"], p["subject"], p["text"], p["fix"]) for p in problems]
            show(self.out, "Pre-checks", ["severity", "subject", "problem", "fix"], rows)
        else:
            self.out.print("Pre-checks: all passed.")
        return problems

    # -- failures --------------------------------------------------------------------------

    def fix(self, ref: str) -> bool:
        journal, options = self.d.journal(ref), self.d.options(ref)
        step = next((name for name, entry in journal.items() if entry.get("state") == "failed"), "")
        wanted: dict[str, str] = {}
        calls: list[dict[str, str]] = []
        if step == "precheck":
            errors = [p for p in self._problems(journal) if p["severity"] == "error"]
            if not errors or any(not p["options"] and p.get("action", {}).get("method") not in FIX_ACTIONS
                                 for p in errors):  # fmt: skip
                return False  # something only the operator can fix, outside this run
            for problem in errors:
                wanted.update(problem["options"])
                if problem.get("action"):
                    calls.append({**problem["action"], "name": problem["subject"]})
        elif step == "split":
            wanted["split_mirrors"] = "true"
        elif step == "fence":
            return self._declare(ref, journal)
        wanted = {k: v for k, v in wanted.items() if options.get(k) != v}
        if not wanted and not calls:
            return False
        if step == "split":
            self.out.print(journal["split"].get("error", ""), markup=False)
        for key, value in wanted.items():
            if not Confirm.ask(QUESTIONS.get(key, f"Apply the fix {key}={value}?"), console=self.out, default=False):
                return False
        for call in calls:
            question = FIX_ACTIONS[call["method"]].format(name=call["name"])
            if not Confirm.ask(question, console=self.out, default=False):
                return False
        for call in calls:  # made as the operator, on this pool; the pre-checks then run again
            self.d.session.call(call["method"], self.d.session.call("VM.get_by_uuid", call["vm"]))
        if wanted:
            self.d.set_options(ref, **wanted)
        return True

    def _declare(self, ref: str, journal: dict[str, Any]) -> bool:
        """Nothing shows that the source site is fenced: the operator may declare it down, by
        typing its pool's name (SRM's disaster-recovery mode); the run checks it does not answer."""
        self.out.print(journal["fence"].get("error", ""), markup=False)
        name = Prompt.ask(
            "If the source site is down, type its pool's name to declare it down (Enter: stop here)",
            console=self.out,
            default="",
            show_default=False,
        ).strip()
        if not name:
            return False
        self.d.set_options(ref, declare_site_down=name)
        return True

    def before_cleanup(self) -> None:
        Prompt.ask(
            "\nThe test VMs are in place. Press Enter to clean up (they are destroyed; disk images stay)",
            console=self.out,
            default="",
            show_default=False,
        )

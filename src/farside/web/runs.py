"""DR runs as the console shows them: the record, its journal in step order, its timings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from farside.dr.plan import STEPS, TITLES_BY_KIND
from farside.web.client import Xapi

# States in which an engine may be acting on the run right now.
ACTIVE = ("running",)


@dataclass
class StepRow:
    name: str
    state: str
    seconds: float | None
    error: str
    detail: str


@dataclass
class RunView:
    ref: str
    uuid: str
    name: str
    kind: str
    state: str
    created: str
    finished: str
    options: dict[str, str]
    journal: dict[str, Any]
    report: str
    report_json: dict[str, Any]
    runner: str = ""
    steps: list[StepRow] = field(default_factory=list)

    @property
    def title(self) -> str:
        return TITLES_BY_KIND.get(self.kind, self.kind)

    @property
    def recovery_seconds(self) -> float | None:
        total = self.report_json.get("total_seconds")
        return float(total) if total is not None else None

    @property
    def metadata_age(self) -> float | None:
        """The age of the oldest metadata the run used when its report was written (its RPO)."""
        ages = [a for a in self.report_json.get("metadata_age_seconds", {}).values() if a is not None]
        return max(ages) if ages else None

    @property
    def progress(self) -> float:
        done = sum(1 for s in self.steps if s.state == "done")
        return done / len(STEPS)

    @property
    def current_step(self) -> str:
        for s in self.steps:
            if s.state in ("started", "failed"):
                return s.name
        return ""

    @property
    def paused_after(self) -> str:
        """The step the run paused after, when it is paused."""
        if self.state != "paused":
            return ""
        paused = [s for s in STEPS if self.journal.get(s, {}).get("paused")]
        return paused[-1] if paused else ""

    @property
    def failed_step(self) -> str:
        return next((s.name for s in self.steps if s.state == "failed"), "")

    def data(self, step: str) -> dict[str, Any]:
        found: dict[str, Any] = self.journal.get(step, {}).get("data", {})
        return found

    @property
    def cleanup(self) -> dict[str, Any]:
        found: dict[str, Any] = self.journal.get("cleanup", {})
        return found


def view(ref: str, record: dict[str, Any]) -> RunView:
    journal = _loads(record.get("steps", ""))
    run = RunView(
        ref,
        record["uuid"],
        record["name_label"],
        record["kind"],
        record["state"],
        record["created"],
        record["finished"],
        dict(record["options"]),
        journal,
        record["report"],
        _loads(record.get("report_json", "")),
        str(record.get("runner", "")),
    )
    for name in (*STEPS, "cleanup"):
        entry = journal.get(name)
        if entry is None:
            run.steps.append(StepRow(name, "pending", None, "", ""))
            continue
        run.steps.append(
            StepRow(
                name,
                str(entry.get("state", "")),
                entry.get("seconds"),
                str(entry.get("error", "")),
                _detail(name, entry.get("data", {})),
            )
        )
    return run


def _loads(text: str) -> dict[str, Any]:
    try:
        found = json.loads(text or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _detail(step: str, data: dict[str, Any]) -> str:
    """One line on what a step found or did, from its journal data."""
    if data.get("skipped"):
        return str(data["skipped"])
    if step == "discover":
        return f"{len(data.get('srs', []))} SR(s) found"
    if step == "fence":
        return str(data.get("proof", ""))
    if step == "attach":
        return f"{len(data.get('tasks', {}))} introduced, {len(data.get('plugged', []))} plugged again"
    if step == "choose":
        return ", ".join(f"{m['pool_name']} gen. {m['generation']}" for m in data.get("metadata", []))
    if step == "load":
        return f"{len(data.get('vms', {}))} VM(s), {len(data.get('vapps', {}))} vApp(s)"
    if step == "select":
        return f"{len(data.get('vapps', []))} vApp(s), {len(data.get('vms', []))} standalone VM(s)"
    if step == "precheck":
        problems = data.get("problems", [])
        errors = sum(1 for p in problems if p["severity"] == "error")
        return f"{errors} error(s), {len(problems) - errors} warning(s)"
    if step == "recover":
        return f"{len(data.get('done', []))} recovered" + (
            f", {len(data['failed'])} failed" if data.get("failed") else ""
        )
    if step == "start":
        vms = data.get("vms", {})
        return f"{sum(1 for v in vms.values() if v.get('state') == 'started')} of {len(vms)} started"
    if step == "protect":
        return f"metadata replication on {len(data.get('enabled', []))} SR(s)"
    if step == "cleanup" and "differences" in data:
        return "the pool is as before" if not data["differences"] else f"differences: {data['differences']}"
    return ""


async def load(xapi: Xapi, uuid: str) -> RunView:
    ref = await xapi.call("DR_run.get_by_uuid", uuid)
    return view(ref, await xapi.call("DR_run.get_record", ref))


async def load_all(xapi: Xapi) -> list[RunView]:
    runs = [view(ref, record) for ref, record in (await xapi.records("DR_run")).items()]
    return sorted(runs, key=lambda r: r.created, reverse=True)


Point = tuple[float, float]


@dataclass
class Trend:
    """Recovery time and metadata age across test failovers, oldest first, as SVG coordinates."""

    labels: list[str]
    recovery: list[Point]
    age: list[Point]
    top: float

    @property
    def count(self) -> int:
        return len(self.labels)

    @staticmethod
    def line(points: list[Point]) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


WIDTH, HEIGHT, PAD = 700.0, 180.0, 30.0


def trend(runs: list[RunView]) -> Trend | None:
    """The trend of the test failovers among ``runs`` (newest first, as the history lists them)."""
    tests = [r for r in reversed(runs) if r.kind == "test" and r.recovery_seconds is not None]
    if not tests:
        return None
    values = [r.recovery_seconds or 0.0 for r in tests] + [r.metadata_age or 0.0 for r in tests]
    top = max(max(values), 1.0)
    step = (WIDTH - 2 * PAD) / max(len(tests) - 1, 1)

    def points(values: list[float | None]) -> list[Point]:
        return [
            (PAD + i * step, HEIGHT - PAD / 2 - (v / top) * (HEIGHT - PAD))
            for i, v in enumerate(values)
            if v is not None
        ]

    return Trend(
        [r.created for r in tests],
        points([r.recovery_seconds for r in tests]),
        points([r.metadata_age for r in tests]),
        top,
    )

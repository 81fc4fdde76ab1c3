"""DR runs as the console shows them: journal rows, timings, the trend of test failovers, the
wizard's page for a run's state."""

from __future__ import annotations

import json
from typing import Any

from farside.dr.plan import STEPS
from farside.web.runs import trend, view
from farside.web.wizard import _probe_result, _stage


def record(
    kind: str = "test", state: str = "done", created: str = "20250101T00:00:00Z", **extra: Any
) -> dict[str, Any]:
    journal = extra.pop("journal", {})
    report = extra.pop("report_json", {})
    return {
        "uuid": f"uuid-{created}", "name_label": "a run", "kind": kind, "state": state, "created": created,
        "finished": "", "options": {"luns": "/l"}, "steps": json.dumps(journal), "report": "",
        "report_json": json.dumps(report), **extra,
    }  # fmt: skip


class TestView:
    def test_steps_come_in_engine_order_with_what_they_did(self) -> None:
        """Every engine step is listed in order, pending when the journal lacks it, with a line on its work."""
        journal = {
            "discover": {"state": "done", "seconds": 0.5, "data": {"srs": [{}, {}]}},
            "precheck": {"state": "failed", "error": "memory", "data": {"problems": [
                {"severity": "error"}, {"severity": "warning"}]}},
        }  # fmt: skip
        run = view("OpaqueRef:r", record(state="failed", journal=journal))
        assert [s.name for s in run.steps] == [*STEPS, "cleanup"]
        by_name = {s.name: s for s in run.steps}
        assert by_name["discover"].detail == "2 SR(s) found" and by_name["discover"].seconds == 0.5
        assert by_name["precheck"].detail == "1 error(s), 1 warning(s)" and by_name["precheck"].error == "memory"
        assert by_name["recover"].state == "pending"
        assert run.failed_step == "precheck" and run.current_step == "precheck"

    def test_timings_come_from_the_report(self) -> None:
        """Recovery time is the report's total; metadata age the oldest source's age."""
        run = view("r", record(report_json={"total_seconds": 3.5, "metadata_age_seconds": {"A": 4.0, "B": 9.0}}))
        assert run.recovery_seconds == 3.5 and run.metadata_age == 9.0
        empty = view("r", record(state="created"))
        assert empty.recovery_seconds is None and empty.metadata_age is None

    def test_a_broken_journal_shows_as_empty(self) -> None:
        """A journal that is not JSON (written by something else) does not break the page."""
        run = view("r", {**record(), "steps": "not json"})
        assert run.journal == {} and all(s.state == "pending" for s in run.steps)

    def test_paused_after_names_the_last_pause(self) -> None:
        """A paused run names the step it stopped after."""
        journal = {"load": {"state": "done", "paused": True}, "discover": {"state": "done"}}
        assert view("r", record(state="paused", journal=journal)).paused_after == "load"
        assert view("r", record(state="running", journal=journal)).paused_after == ""


class TestTrend:
    def test_only_test_failovers_with_a_report_count_oldest_first(self) -> None:
        """The trend holds test failovers with a report, oldest on the left, scaled to the largest value."""
        runs = [
            view("3", record(created="20250103T00:00:00Z", report_json={"total_seconds": 2.0})),
            view("2", record(kind="failover", created="20250102T00:00:00Z", report_json={"total_seconds": 50.0})),
            view("1", record(created="20250101T00:00:00Z",
                             report_json={"total_seconds": 4.0, "metadata_age_seconds": {"A": 8.0}})),
            view("0", record(state="created", created="20241231T00:00:00Z")),
        ]  # fmt: skip
        found = trend(runs)
        assert found is not None
        assert found.labels == ["20250101T00:00:00Z", "20250103T00:00:00Z"] and found.top == 8.0
        (x1, y1), (x2, y2) = found.recovery
        assert x1 < x2 and y1 < y2  # 4 s is higher on the chart (smaller y) than 2 s
        assert len(found.age) == 1  # the second run has no metadata age
        assert trend([runs[1]]) is None


class TestWizard:
    def test_probe_lists_every_lun_below_a_directory(self) -> None:
        """A probe's SRs, with the path of each LUN, whether it holds metadata and whether it is here already."""
        xml = (
            '<?xml version="1.0" ?>\n<SRlist><SR><UUID>u1</UUID><name_label>LUN &amp; co</name_label>'
            "<pool_metadata_detected>true</pool_metadata_detected><path>/luns/a</path></SR>"
            "<SR><UUID>u2</UUID><name_label>B</name_label><pool_metadata_detected>false</pool_metadata_detected>"
            "</SR></SRlist>"
        )
        found = _probe_result(xml, "/luns", {"u2"})
        assert [(f.uuid, f.name, f.path, f.metadata, f.known) for f in found] == [
            ("u1", "LUN & co", "/luns/a", True, False),
            ("u2", "B", "/luns", False, True),
        ]

    def test_the_stage_follows_the_journal(self) -> None:
        """A running run is shown at the wizard page of what it is doing."""
        assert _stage(view("r", record(state="running"))) == "storage"
        selected = {"select": {"state": "done"}}
        assert _stage(view("r", record(state="running", journal=selected, options={"pause_after": "precheck"}))) == (
            "precheck"
        )
        checked = {**selected, "precheck": {"state": "done"}}
        assert _stage(view("r", record(state="running", journal=checked, options={}))) == "recovery"
        assert _stage(view("r", record(state="done", journal={**checked, "cleanup": {}}))) == "report"

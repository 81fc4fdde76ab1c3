"""The engine's step events shown as lines (scripts) or bars (a terminal)."""

from __future__ import annotations

import io

from rich.console import Console

from farside.cli.dr.progress import StepDisplay

EVENTS = [
    {"step": "discover", "state": "started"},
    {"step": "discover", "state": "done"},
    {"step": "recover", "state": "started"},
    {"step": "recover", "state": "progress", "done": 1, "total": 2},
    {"step": "recover", "state": "progress", "done": 2, "total": 2},
    {"step": "recover", "state": "done"},
    {"step": "start", "state": "started"},
    {"step": "start", "state": "failed"},
]


def test_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    with StepDisplay(Console(file=out)) as display:
        for event in EVENTS:
            display.event(event)
    lines = out.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "discover: done", "recover: 1/2", "recover: 2/2", "recover: done", "start: failed"
    ]  # fmt: skip
    assert lines[0].endswith(" s)")


def test_bars_on_a_terminal_and_the_pause() -> None:
    out = io.StringIO()
    with StepDisplay(Console(file=out, force_terminal=True, width=100, color_system=None)) as display:
        for event in [*EVENTS[:6], {"step": "precheck", "state": "started"}, {"step": "precheck", "state": "paused"}]:
            display.event(event)
    assert display.paused_at == "precheck"
    text = out.getvalue()
    assert "recover" in text and "2/2" in text and "paused" in text


def test_quiet_shows_nothing_but_still_notes_the_pause() -> None:
    out = io.StringIO()
    with StepDisplay(Console(file=out), quiet=True) as display:
        display.event({"step": "load", "state": "paused"})
    assert out.getvalue() == "" and display.paused_at == "load"


def test_a_long_line_is_not_wrapped_at_80_columns() -> None:
    out = io.StringIO()
    with StepDisplay(Console(file=out, width=80)) as display:
        display.event({"step": "recover", "state": "progress", "done": 0, "total": 10**80})
    assert out.getvalue().count("\n") == 1


def test_a_bar_has_its_total_from_the_first_event() -> None:
    out = io.StringIO()
    with StepDisplay(Console(file=out, force_terminal=True, width=100, color_system=None)) as display:
        display.event({"step": "start", "state": "started"})
        display.event({"step": "start", "state": "progress", "done": 0, "total": 3})
        assert display._bars is not None
        assert display._bars.tasks[0].total == 3

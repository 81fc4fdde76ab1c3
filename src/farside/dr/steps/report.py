"""Report: the run's summary (``farside.dr.report``) written into its record."""

from __future__ import annotations

import json
from typing import Any

from farside.dr.context import RunContext
from farside.dr.report import render
from farside.model.types import now


def run(ctx: RunContext, data: dict[str, Any]) -> None:
    write(ctx, "succeeded")


def write(ctx: RunContext, outcome: str) -> None:
    """The report of the journal as it is, with ``outcome`` (succeeded, failed)."""
    text, report = render(ctx.options, ctx.journal, outcome)
    ctx.write(report=text, report_json=json.dumps(report, sort_keys=True), finished=now())

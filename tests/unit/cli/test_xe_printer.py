"""xe's record blocks and --minimal lists, pinned by golden text."""

from __future__ import annotations

import io
from pathlib import Path

from farside.cli.xe.printer import Printer, escape_commas, format_record

# What `xe vm-list` prints for two VMs (xapi's cli_printer layout).
GOLDEN_VM_LIST = (Path(__file__).parent / "golden" / "xe-vm-list.txt").read_text()

RECORDS = [
    [("uuid ( RO)", "0f5e7c52-0000-4000-8000-000000000001"), ("name-label ( RW)", "web"),
     ("power-state ( RO)", "running")],
    [("uuid ( RO)", "0f5e7c52-0000-4000-8000-000000000002"), ("name-label ( RW)", "db, primary"),
     ("power-state ( RO)", "halted")],
]  # fmt: skip


def test_records_as_aligned_blocks() -> None:
    """Colons align four past the longest name; two blank lines follow each record."""
    out = io.StringIO()
    printer = Printer(out, minimal=False)
    printer.records(RECORDS)
    printer.flush()
    assert out.getvalue() == GOLDEN_VM_LIST


def test_minimal_prints_first_values_with_commas_escaped() -> None:
    """--minimal prints the first field of each record on one line, commas and backslashes escaped."""
    out = io.StringIO()
    printer = Printer(out, minimal=True)
    printer.records([r[1:] for r in RECORDS])
    assert out.getvalue() == ""
    printer.flush()
    assert out.getvalue() == "web,db\\, primary\n"
    assert escape_commas("a\\b,c") == "a\\\\b\\,c"


def test_minimal_of_nothing_is_an_empty_line() -> None:
    """xe prints an empty line when --minimal finds nothing."""
    out = io.StringIO()
    printer = Printer(out, minimal=True)
    printer.records([])
    printer.flush()
    assert out.getvalue() == "\n"


def test_values_one_a_line() -> None:
    """Plain values (a new uuid, param-get) print one a line."""
    out = io.StringIO()
    printer = Printer(out, minimal=False)
    printer.values(["a", "b"])
    assert out.getvalue() == "a\nb\n"
    assert format_record([("only ( RO)", "x")]) == "only ( RO)    : x\n"

"""xe's data-source commands: the table xe prints (cli_printer's record blocks), pinned by golden text."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pytest

from farside.cli.xe import COMMANDS
from farside.cli.xe.command import Context, Params
from farside.cli.xe.datasource import ocaml_float
from farside.cli.xe.printer import Printer

GOLDEN = Path(__file__).parent / "golden"
VM_REF, HOST_REF = "OpaqueRef:vm", "OpaqueRef:host"
SOURCES = [
    {"name_label": "cpu0", "name_description": "CPU0 usage", "enabled": True, "standard": True,
     "units": "(fraction)", "min": 0.0, "max": 1.0, "value": 0.25},
    {"name_label": "vbd_hda_iops_read", "name_description": "Read requests/s from device hda", "enabled": False,
     "standard": False, "units": "requests/s", "min": 0.0, "max": math.inf, "value": 0.0},
]  # fmt: skip


class Pool:
    """The few calls the commands make, answered as a one-VM, one-host pool would."""

    def __init__(self) -> None:
        self.made: list[tuple[str, tuple[Any, ...]]] = []

    def call(self, method: str, *args: Any) -> Any:
        self.made.append((method, args))
        answers: dict[str, Any] = {
            "VM.get_all_records": {VM_REF: {"uuid": "vm-uuid", "name_label": "web", "is_a_template": False,
                                            "is_control_domain": False, "is_a_snapshot": False}},
            "VM.get_data_sources": SOURCES,
            "VM.query_data_source": 0.0123456,
            "host.get_all": [HOST_REF],
            "host.get_uuid": "host-uuid",
            "host.get_name_label": "h1",
            "host.get_data_sources": SOURCES[:1],
            "host.query_data_source": 2.5,
        }  # fmt: skip
        return answers.get(method, "")


def run(command: str, **params: str) -> tuple[str, Pool]:
    pool = Pool()
    out = io.StringIO()
    ctx = Context(pool, Params(list(params.items())), Printer(out, minimal=False))  # type: ignore[arg-type]
    COMMANDS[command].check(ctx.params)
    COMMANDS[command].run(ctx)
    ctx.printer.flush()
    return out.getvalue(), pool


@pytest.mark.parametrize("command", ["vm-data-source-list", "host-data-source-list"])
def test_list_prints_xes_table(command: str) -> None:
    """Each source as a block: name_label, name_description, enabled, standard, min, max, units."""
    text, _ = run(command, **({"vm": "web"} if command.startswith("vm") else {}))
    assert text == (GOLDEN / f"xe-{command}.txt").read_text()


def test_query_prints_the_value_as_xe_does() -> None:
    """xe prints the value with %f."""
    assert run("vm-data-source-query", vm="web", **{"data-source": "cpu0"})[0] == "0.012346\n"
    assert run("host-data-source-query", **{"data-source": "loadavg"})[0] == "2.500000\n"


def test_record_and_forget_name_the_source() -> None:
    """record and forget send the VM's (or host's) ref and the source's name."""
    _, pool = run("vm-data-source-record", vm="web", **{"data-source": "vbd_hda_iops_read"})
    assert ("VM.record_data_source", (VM_REF, "vbd_hda_iops_read")) in pool.made
    _, pool = run("host-data-source-forget", host="h1", **{"data-source": "cpu0"})
    assert ("host.forget_data_source_archives", (HOST_REF, "cpu0")) in pool.made


def test_floats_print_as_ocaml_writes_them() -> None:
    """string_of_float: a trailing dot for whole numbers, inf for infinity."""
    assert [ocaml_float(v) for v in (0.0, 1.0, 0.5, math.inf, 16777216.0)] == ["0.", "1.", "0.5", "inf", "16777216."]

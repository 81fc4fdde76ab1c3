"""xe's output: records as aligned ``name ( RO): value`` blocks, or ``--minimal`` comma lists.

A record prints its first field name padded on the right and every other name padded on the left,
all to the longest name plus four, then ``": "`` and the value; two blank lines follow each record.
``--minimal`` prints only the first value of each record (or each listed value), commas in values
escaped, all on one line, once the command has finished.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

Record = Sequence[tuple[str, str]]


def format_record(record: Record) -> str:
    """One record's block, each line ended by a newline (no blank lines)."""
    if not record:
        return "\n"
    width = 4 + max(len(name) for name, _ in record)
    (first, value), rest = record[0], record[1:]
    lines = [f"{first.ljust(width)}: {value}"]
    lines += [f"{name.rjust(width)}: {value}" for name, value in rest]
    return "\n".join(lines) + "\n"


def escape_commas(value: str) -> str:
    """A value as ``--minimal`` prints it: backslashes and commas escaped by a backslash."""
    return value.replace("\\", "\\\\").replace(",", "\\,")


class Printer:
    """Where a command's results go; ``flush`` ends the output (``--minimal`` prints only then)."""

    def __init__(self, out: TextIO, minimal: bool) -> None:
        self.out = out
        self.minimal = minimal
        self._pending: list[str] = []

    def records(self, records: Sequence[Record]) -> None:
        if self.minimal:
            # As xe: an empty table, or one with an empty record, adds nothing to the list.
            if records and all(records):
                self._pending.append(",".join(escape_commas(r[0][1]) for r in records))
            return
        for record in records:
            self.out.write(format_record(record) + "\n\n")

    def values(self, values: Sequence[str]) -> None:
        """A list of plain values: one a line, or one comma list with ``--minimal``."""
        if self.minimal:
            self._pending.append(",".join(escape_commas(v) for v in values))
            return
        for value in values:
            self.out.write(value + "\n")

    def raw(self, data: bytes) -> None:
        """Bytes as they are (a serial console), through the stream's binary buffer when it has one."""
        self.out.flush()
        buffer = getattr(self.out, "buffer", None)
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:
            self.out.write(data.decode("utf-8", "replace"))

    def flush(self) -> None:
        if self.minimal:
            self.out.write(",".join(self._pending) + "\n")
            self._pending = []
        self.out.flush()

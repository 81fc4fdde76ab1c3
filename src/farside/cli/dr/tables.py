"""Tables: drawn by rich on a terminal, plain aligned columns otherwise (for scripts and grep)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text


def show(console: Console, title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    if console.is_terminal:
        table = Table(title=title, title_justify="left", show_lines=False)
        for header in headers:
            table.add_column(header, overflow="fold")
        for row in cells:
            table.add_row(*(Text(c) for c in row))  # Text: brackets in names are not markup
        console.print(table)
        return
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = [title] if title else []
    for row in [list(headers), *cells]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def when(value: object) -> str:
    """A XenAPI datetime (``20260502T10:04:05Z``, as xmlrpc's DateTime or text) for people; "" when null."""
    text = str(getattr(value, "value", value))
    if len(text) < 17 or text.startswith("1970"):
        return ""
    return f"{text[0:4]}-{text[4:6]}-{text[6:8]} {text[9:17]}"


def age(seconds: float | None) -> str:
    """``42 s``, ``3 min``, ``2 h 5 min``, ``4 d``: how old something is, for people; a time ahead of
    this host's clock is "in the future", never a negative age."""
    if seconds is None:
        return "?"
    if seconds < 0:
        return "in the future"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 2 * 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d"

"""xe's VDI commands: vdi-list (``type=Metadata`` finds the metadata VDIs for disaster recovery)."""

from __future__ import annotations

from farside.cli.xe.command import list_command
from farside.cli.xe.records import VDI

COMMANDS = [list_command(VDI)]

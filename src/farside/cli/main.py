"""``farside``: the entry point, and the one place errors become messages and exit codes."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from farside import __version__
from farside.errors import FarsideError


class _Parser(argparse.ArgumentParser):
    """argparse's refusals as one line saying what to do (its default prints the usage block first).
    Subparsers are made with the class of their parent, so every command gets this."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}; see '{self.prog} --help'\n")


def parser() -> argparse.ArgumentParser:
    # Imported here, not at the top: they bring in the server stack, which takes a moment to load,
    # and an operator's Ctrl-C meanwhile must end the command as any other Ctrl-C does (main).
    from farside.cli import dr, image, lab, metabackup, metadata, mirror, pool, user, watchdog, xe

    p: argparse.ArgumentParser = _Parser(prog="farside", description="Disaster recovery for VM pools, speaking XenAPI.")
    p.add_argument("--version", action="version", version=f"farside {__version__}")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pool.register(commands)
    user.register(commands)
    metadata.register(commands)
    metabackup.register(commands)
    image.register(commands)
    mirror.register(commands)
    xe.register(commands)
    lab.register(commands)
    dr.register(commands)
    watchdog.register(commands)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        commands = parser()
    except KeyboardInterrupt:
        return 130
    args = commands.parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except FarsideError as exc:
        print(f"farside: {exc.describe()}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:
        print(f"farside: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141  # the reader went away (| head): nothing more to say
    except OSError as exc:
        # A server or file that is not there: one line, no traceback.
        print(f"farside: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""``farside xe``: xe's command line, speaking XenAPI to a Farside pool server.

``farside xe [-s HOST] [-p PORT] [-u USER] [-pw PASSWORD | -pwf FILE] COMMAND key=value ... [--minimal]``.
Output and errors are xe's: records as aligned ``name ( RO): value`` blocks, ``--minimal`` comma
lists, XenAPI failures as their description and parameters, exit code 1 on any failure. The
commands are listed by ``farside xe help``; docs/xe.md describes them.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import sys
import xmlrpc.client
from collections.abc import Sequence
from typing import TextIO

from farside.cli.xe import (
    appliance,
    cd,
    datasource,
    drtask,
    host,
    migrate,
    pool,
    snapshot,
    sr,
    template,
    transfer,
    vdi,
    vm,
)
from farside.cli.xe.argv import Invocation, UsageError, parse
from farside.cli.xe.command import Command, Context, Params
from farside.cli.xe.connection import connect, resolve
from farside.cli.xe.failures import USAGE_HINT, RefToUuid, XeError, describe, usage_error
from farside.cli.xe.fields import NULL_REF
from farside.cli.xe.printer import Printer, format_record
from farside.config import client_env
from farside.dr.session import XmlRpcSession
from farside.errors import XenAPIFailure

COMMANDS: dict[str, Command] = {
    c.name: c
    for m in (vm, template, migrate, sr, vdi, cd, appliance, drtask, pool, datasource, transfer, snapshot, host)
    for c in m.COMMANDS
}

USAGE = """Usage:
  farside xe <command>
    [ -s <server> ]            pool server: HOST[:PORT] or URL (default 127.0.0.1:8440)
    [ -p <port> ]              pool server port number
    [ -u <username> -pw <password> | -pwf <password file> ]
                               User authentication (password or file)
    [ --tls ]                  HTTPS to a HOST[:PORT] server (a https:// URL implies it)
    [ --no-verify ]            accept a certificate that does not verify (self-signed)
    [ --config <file> ]        settings file (default ~/.farside/xe.conf)
    [ --minimal ]              Output only values in a comma-separated lists
    [ <other arguments> ... ]  Command-specific options
Settings may also come from FARSIDE_SERVER, FARSIDE_USER, FARSIDE_PASSWORD, FARSIDE_PASSWORD_FILE,
FARSIDE_NO_VERIFY and FARSIDE_XE_CONFIG.

A full list of commands can be obtained by running
  farside xe help
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # xe's own syntax (-pw, key=value, --minimal anywhere): argparse must not read any of it.
    p = commands.add_parser(
        "xe", help="xe commands against a pool server ('farside xe help')", add_help=False, prefix_chars="\0"
    )
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(run=lambda args: main(args.argv))


def main(argv: Sequence[str], out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one xe command line; returns the exit code (0, or 1 on any failure, as xe)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        inv = parse(argv)
        if inv.command is None or inv.command == "help" or inv.help:
            return _help(inv, out, err)
        command = COMMANDS.get(inv.command)
        if command is None:
            raise usage_error(f"Unknown command: {inv.command}")
        params = Params(inv.params)
        command.check(params)
        return _run(command, inv, params, out)
    except UsageError as exc:
        _print(err, [str(exc), USAGE_HINT])
    except XeError as exc:
        _print(err, exc.lines)
    except KeyboardInterrupt:
        return 130
    return 1


def _run(command: Command, inv: Invocation, params: Params, out: TextIO) -> int:
    session = connect(resolve(inv, client_env()))
    printer = Printer(out, params.flag("minimal"))
    try:
        command.run(Context(session, params, printer))
        printer.flush()
    except XenAPIFailure as exc:
        raise XeError(*describe(exc.failure[0], exc.params, _uuid_of(session))) from None
    except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError):
        raise XeError("Lost connection to the server.") from None
    finally:
        # If the server went away, its sessions went with it.
        with contextlib.suppress(OSError, http.client.HTTPException, xmlrpc.client.Error):
            session.logout()
    return 0


def _uuid_of(session: XmlRpcSession) -> RefToUuid:
    """Refs in a failure shown as uuids, as xe shows them (the ref itself when it is not found)."""

    def uuid_of(cls: str, ref: str) -> str | None:
        if ref == NULL_REF:
            return None
        try:
            return str(session.call(f"{cls}.get_uuid", ref))
        except (XenAPIFailure, OSError, http.client.HTTPException, xmlrpc.client.Error):
            return None

    return uuid_of


def _help(inv: Invocation, out: TextIO, err: TextIO) -> int:
    """``help`` lists the commands, ``help COMMAND`` (or ``COMMAND --help``) shows one as xe does;
    no command at all prints the usage and fails."""
    if inv.command is None and not inv.help:
        err.write(USAGE)
        return 1
    topic = inv.command if inv.command != "help" else next((k for k, _ in inv.params), None)
    if topic is None:
        out.write(USAGE + "\nCommands:\n")
        out.writelines(f"    {name:<36} {COMMANDS[name].help}\n" for name in sorted(COMMANDS))
        return 0
    command = COMMANDS.get(topic)
    if command is None:
        raise usage_error(f"Unknown command: {topic}")
    out.write(
        format_record(
            [
                ("command name        ", command.name),
                ("reqd params     ", ", ".join(command.reqd)),
                ("optional params ", ", ".join(command.optn)),
                ("description     ", command.help),
            ]
        )
    )
    return 0


def _print(stream: TextIO, lines: Sequence[str]) -> None:
    stream.write("".join(line + "\n" for line in lines))
    stream.flush()

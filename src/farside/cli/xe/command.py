"""What every xe command shares: its declared parameters, the context it runs in, and xe's generic
``<class>-list``, ``<class>-param-get`` and ``<class>-param-set`` over the tables in records.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from farside.cli.xe.failures import XeError, command_error, describe, usage_error
from farside.cli.xe.fields import Field, Kind, Lookup, Row
from farside.cli.xe.printer import Printer
from farside.cli.xe.records import View
from farside.dr.session import Session
from farside.errors import XenAPIFailure

# Parameters every command takes (xe's standard ones that mean something here).
STANDARD = ("minimal",)


class Params:
    """A command's ``key=value`` parameters (each key once, as xe requires)."""

    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        self.items: dict[str, str] = {}
        for key, value in items:
            if key in self.items:
                raise command_error(f"Parameter {key} is defined multiple times, define it only once.")
            self.items[key] = value

    def __contains__(self, key: str) -> bool:
        return key in self.items

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.items.get(key, default)

    def __getitem__(self, key: str) -> str:
        return self.items[key]

    def flag(self, key: str) -> bool:
        value = self.items.get(key)
        if value is None:
            return False
        if value.lower() in ("true", "on", "yes", "1"):
            return True
        if value.lower() in ("false", "off", "no", "0"):
            return False
        raise command_error(f"Failed to parse parameter '{key}': expecting a boolean (true or false)")

    def prefixed(self, prefix: str) -> dict[str, str]:
        """The map given as ``prefix:key=value`` parameters (``device-config:path=/luns/a``)."""
        return {k[len(prefix) + 1 :]: v for k, v in self.items.items() if k.startswith(prefix + ":")}

    def rest(self, *skip: str) -> list[tuple[str, str]]:
        """The parameters other than ``skip`` and the standard ones (filters, fields to set)."""
        return [(k, v) for k, v in self.items.items() if k not in skip and k not in STANDARD]


@dataclass
class Context:
    """What a command runs with: the pool session, its parameters and where output goes."""

    session: Session
    params: Params
    printer: Printer

    def call(self, method: str, *args: Any) -> Any:
        return self.session.call(method, *args)


Accepts = Callable[[str], bool]


@dataclass(frozen=True)
class Command:
    """One xe command.

    Args:
        name: as typed (``vm-start``).
        run: does it.
        reqd: required parameters.
        optn: optional ones; a name ending in ``:`` takes any ``name:key=value``.
        help: one sentence for ``farside xe help``.
        also: accepts further parameters (the fields a list filters on); given a name, says if it fits.
    """

    name: str
    run: Callable[[Context], None]
    reqd: tuple[str, ...] = ()
    optn: tuple[str, ...] = ()
    help: str = ""
    also: Accepts | None = None

    def check(self, params: Params) -> None:
        """Refuse a missing required parameter or one the command does not know, before connecting."""
        for key in self.reqd:
            if key not in params:
                raise usage_error(f"Required parameter not found: {key}")
        for key in params.items:
            if key in self.reqd or (key in self.optn and not key.endswith(":")) or key in STANDARD:
                continue
            if any(p.endswith(":") and key.startswith(p) and len(key) > len(p) for p in self.optn):
                continue
            if self.also is not None and self.also(key):
                continue
            takes = ", ".join([*self.reqd, *self.optn]) or "no parameters"
            if self.also is not None:
                takes += ", or a field to filter on"
            raise usage_error(f"Unknown parameter '{key}' for {self.name} (it takes: {takes})")


def field_param(view: View) -> Accepts:
    """Whether a parameter names a field of ``view`` to filter on: ``name``, ``map:key``, ``set:contains``."""

    def accepts(key: str) -> bool:
        if key in view.by_name:
            return True
        name, sep, sub = key.partition(":")
        found = view.by_name.get(name)
        if not sep or found is None:
            return False
        return found.kind is Kind.MAP or (found.kind is Kind.SET and sub == "contains")

    return accepts


def matches(row: Row, view: View, key: str, value: str) -> bool:
    """xe's filter: a field equal to the value, a map key with the value, a set containing it."""
    if key in view.by_name:
        return view.by_name[key].get(row) == value
    name, _, sub = key.partition(":")
    found = view.by_name[name]
    entries = found.entries(row) if found.entries is not None else {}
    if found.kind is Kind.MAP:
        return isinstance(entries, dict) and entries.get(sub) == value
    return value in entries


def selected_fields(view: View, params: Params, default: Sequence[str]) -> list[Field]:
    """The fields to print: ``params=a,b`` (``all`` for every one) or the default, in the class's order."""
    chosen = params.get("params")
    names = default if chosen is None else ([] if chosen == "all" else [n for n in chosen.split(",") if n])
    unknown = [n for n in names if n not in view.by_name]
    if unknown:
        raise command_error(f"Unknown field '{unknown[0]}' for {view.noun} (see {view.noun}-list params=all)")
    return [f for f in view.fields if not names or f.name in names]


def rows(lookup: Lookup, view: View) -> list[Row]:
    return [Row(view.cls, ref, record, lookup) for ref, record in lookup.records(view.cls).items()]


@contextmanager
def database(ctx: Context, required: bool) -> Iterator[Callable[..., Any]]:
    """Calls on the database in ``database:vdi-uuid=`` (a foreign pool's, read from its metadata VDI),
    or on the pool itself when none is given. The database session is logged out afterwards."""
    vdi_uuid = ctx.params.prefixed("database").get("vdi-uuid")
    if vdi_uuid is None:
        if required:
            raise command_error(
                "A parameter of the form 'database:vdi-uuid=<uuid>' must be specified to run this command."
            )
        yield ctx.call
        return
    vdi = ctx.call("VDI.get_by_uuid", vdi_uuid)
    db = str(ctx.call("VDI.open_database", vdi))
    try:
        yield lambda method, *args: ctx.session.call_as(db, method, *args)
    finally:
        ctx.session.call_as(db, "session.logout")


def list_command(view: View) -> Command:
    """``<noun>-list [params=...] [field=value ...] [--all] [database:vdi-uuid=...]``."""

    def run(ctx: Context) -> None:
        params = ctx.params
        fields = selected_fields(view, params, view.list_params)
        with database(ctx, required=False) as call:
            lookup = Lookup(call)
            found = rows(lookup, view)
            if not params.flag("all"):
                filters = [*view.filters, *params.rest("params", "all")]
                filters = [(k, v) for k, v in filters if not k.startswith("database:")]
                found = [row for row in found if all(matches(row, view, k, v) for k, v in filters)]
            ctx.printer.records([[(f.label, f.get(row)) for f in fields] for row in found])

    return Command(
        f"{view.noun}-list",
        run,
        optn=("params", "all", "database:"),
        help=f"List the {view.noun}s, filtered by field=value, map-field:key=value or set-field:contains=value.",
        also=field_param(view),
    )


def one(ctx: Context, view: View, uuid: str, call: Callable[..., Any] | None = None) -> Row:
    """The object of ``view`` with ``uuid``, as a row."""
    call = call or ctx.call
    ref = str(call(f"{view.cls}.get_by_uuid", uuid))
    return Row(view.cls, ref, call(f"{view.cls}.get_record", ref), Lookup(call))


def param_list_command(view: View) -> Command:
    """``<noun>-param-list uuid=...``: every field of one object, as one record."""

    def run(ctx: Context) -> None:
        with database(ctx, required=False) as call:
            row = one(ctx, view, ctx.params["uuid"], call)
            ctx.printer.records([[(f.label, f.get(row)) for f in view.fields]])

    return Command(
        f"{view.noun}-param-list",
        run,
        reqd=("uuid",),
        optn=("database:",),
        help=f"List every field of one {view.noun}.",
    )


def param_get_command(view: View) -> Command:
    """``<noun>-param-get uuid=... param-name=... [param-key=...]``."""

    def run(ctx: Context) -> None:
        with database(ctx, required=False) as call:
            row = one(ctx, view, ctx.params["uuid"], call)
            name = ctx.params["param-name"]
            found = view.by_name.get(name)
            if found is None:
                raise command_error(f"Unknown field '{name}' for {view.noun} (see {view.noun}-list params=all)")
            key = ctx.params.get("param-key")
            if key is not None and found.kind is Kind.MAP and found.entries is not None:
                entries = found.entries(row)
                if not isinstance(entries, dict) or key not in entries:
                    raise command_error(f"Key {key} not found in map")
                ctx.printer.values([entries[key]])
            else:
                ctx.printer.values([found.get(row)])

    return Command(
        f"{view.noun}-param-get",
        run,
        reqd=("uuid", "param-name"),
        optn=("param-key", "database:"),
        help="Print one field of an object; for a map field, param-key=KEY prints one entry.",
    )


def param_set_command(view: View) -> Command:
    """``<noun>-param-set uuid=... field=value ... map-field:key=value ...``."""

    def run(ctx: Context) -> None:
        row = one(ctx, view, ctx.params["uuid"])
        for key, value in ctx.params.rest("uuid"):
            set_field(row, view, key, value)

    def settable(key: str) -> bool:
        name, sep, _ = key.partition(":")
        found = view.by_name.get(name)
        return found is not None and (found.kind is Kind.MAP if sep else found.kind is Kind.PLAIN)

    return Command(
        f"{view.noun}-param-set",
        run,
        reqd=("uuid",),
        help="Set fields (field=value) or map entries (map-field:key=value) of an object.",
        also=settable,
    )


def set_field(row: Row, view: View, key: str, value: str) -> None:
    name, sep, sub = key.partition(":")
    found = view.by_name[name]
    if sep:
        if found.put is None:
            raise command_error(f"Map field '{name}' is read-only.")
        found.put(row, sub, value)
    elif found.set is None:
        raise command_error(f"Field '{name}' is read-only.")
    else:
        found.set(row, value)


def select(ctx: Context, view: View, skip: Sequence[str], single: bool = False, templates: bool = False) -> list[Row]:
    """xe's VM selectors: ``vm=NAME-OR-UUID`` and field filters; dom0 and snapshots never match, templates only
    for commands that take them (``templates``: vm-clone, vm-copy). More than one match needs
    ``--multiple``, or is refused for a ``single`` VM command."""
    lookup = Lookup(ctx.call)
    filters = [("is-control-domain", "false"), ("is-a-snapshot", "false")]
    filters += [] if templates else [("is-a-template", "false")]
    filters += [(k, v) for k, v in ctx.params.rest("vm", "multiple", *skip)]
    found = rows(lookup, view)
    wanted = ctx.params.get("vm")
    if wanted is not None:
        found = [r for r in found if wanted in (r["uuid"], r["name_label"])]
    found = [r for r in found if all(matches(r, view, k, v) for k, v in filters)]
    if not found:
        raise command_error("No matching VMs found")
    if len(found) > 1 and single:
        raise command_error("Multiple matches VMs found. Operation can only be performed on one VM at a time")
    if len(found) > 1 and not ctx.params.flag("multiple"):
        raise command_error("Multiple matches VMs found. --multiple required to complete the operation")
    return found


def each(selected: list[Row], op: Callable[[Row], None]) -> None:
    """Run ``op`` on every selected object; with several, a failure does not stop the others and each
    is reported as xe does (``operation failed on UUID: ...``)."""
    if len(selected) == 1:
        op(selected[0])
        return
    failed: list[str] = []
    for row in selected:
        try:
            op(row)
        except XenAPIFailure as exc:
            lines = describe(exc.failure[0], exc.params, row.lookup.uuid)
            failed.append(f"operation failed on {row['uuid']}: " + "\n".join(lines))
        except XeError as exc:
            failed.append(f"operation failed on {row['uuid']}: " + "\n".join(exc.lines))
    if failed:
        raise XeError(*failed)

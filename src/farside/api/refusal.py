"""The failure a refused message answers (model/refusals.py), its parameters filled from the call."""

from __future__ import annotations

from typing import Any

from farside.db import Database
from farside.errors import FieldTypeError, XenAPIFailure
from farside.model import class_named
from farside.model.refusals import Refusal, parameter


def failure(db: Database, refused: Refusal, args: list[Any]) -> XenAPIFailure:
    """The group's error for this call: its code, its parameters, and its reason last.

    Raises:
        FieldTypeError: a parameter names an argument that is not a ref.
        HandleInvalid: a parameter reads a field of an object that does not exist.
    """
    group = refused.group
    params = [_fill(db, refused, template, args) for template in group.params]
    return XenAPIFailure(group.code, *params, group.reason)


def _fill(db: Database, refused: Refusal, template: str, args: list[Any]) -> str:
    kind, index, field = parameter(template)
    if kind == "message":
        return refused.wire_name
    if index is None:
        return template
    value = args[index]
    if field is None:
        return str(value)
    # ``{0.SR}``: the argument is a ref of the message's own class, as xapi's ``self`` is.
    cls = class_named(refused.wire_name.partition(".")[0])
    if not isinstance(value, str) or cls is None:
        raise FieldTypeError(f"arg{index}")
    with db.read() as tx:
        return str(tx.get_field(cls.name, tx.check(cls.name, value), field))

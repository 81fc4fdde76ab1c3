"""role: permissions as xapi's role graph gives them.

xapi's permissions are roles too (roles without subroles); Farside's six roles each list the
weaker ones as subroles (db/bootstrap.py), so a role's permissions are every role below it, and a
permission belongs to every role above it.
"""

from __future__ import annotations

from farside.api.context import Context
from farside.api.registry import handles
from farside.db import Transaction


def _permissions(tx: Transaction, role: str) -> list[str]:
    """Every role reachable from ``role`` through subroles, not ``role`` itself."""
    found: list[str] = []
    todo = list(tx.get_field("role", role, "subroles"))
    while todo:
        sub = todo.pop()
        if sub not in found and tx.exists("role", sub):
            found.append(sub)
            todo.extend(tx.get_field("role", sub, "subroles"))
    return found


@handles("role.get_permissions")
def get_permissions(ctx: Context, role: str) -> list[str]:
    with ctx.db.read() as tx:
        return _permissions(tx, tx.check("role", role))


@handles("role.get_permissions_name_label")
def get_permissions_name_label(ctx: Context, role: str) -> list[str]:
    with ctx.db.read() as tx:
        return [tx.get_field("role", r, "name_label") for r in _permissions(tx, tx.check("role", role))]


def _holders(tx: Transaction, permission: str) -> list[str]:
    return [r for r in tx.refs("role") if permission in _permissions(tx, r)]


@handles("role.get_by_permission")
def get_by_permission(ctx: Context, permission: str) -> list[str]:
    with ctx.db.read() as tx:
        return _holders(tx, tx.check("role", permission))


@handles("role.get_by_permission_name_label")
def get_by_permission_name_label(ctx: Context, label: str) -> list[str]:
    # xapi answers an unknown name with the empty set, not an error.
    with ctx.db.read() as tx:
        return [r for permission in tx.find("role", "name_label", label) for r in _holders(tx, permission)]

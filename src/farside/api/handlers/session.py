"""session: logout, password change, and reads that show a session only to whom may see it.

Login is the dispatcher's, as it needs no session. A session's ref is its user's credential, so
every read of the session class is checked against ``sessions.may_read``: another user's session
answers as if it did not exist (HANDLE_INVALID, UUID_INVALID), so a guess learns nothing; a pool
admin reads every session, as xapi's RBAC lets it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from farside.api import implicit
from farside.api.context import Context
from farside.api.registry import handles
from farside.api.sessions import may_read
from farside.db import Transaction, users, where
from farside.errors import HandleInvalid, SessionAuthenticationFailed, UuidInvalid
from farside.model import CLASSES
from farside.model.messages import Signature, signatures
from farside.model.roles import Role


@handles("session.logout", foreign_db=True)
def logout(ctx: Context) -> str:
    ctx.services.sessions.logout(ctx.caller.session)
    return ""


@handles("session.change_password")
def change_password(ctx: Context, old_pwd: str, new_pwd: str) -> str:
    name = ctx.caller.user_name
    with ctx.db.read() as tx:
        if users.verify(tx, name, old_pwd) is None:
            raise SessionAuthenticationFailed(name, "The old password is not correct")
    with ctx.db.write() as tx:
        users.set_password(tx, name, new_pwd)
    return ""


def _visible(ctx: Context, tx: Transaction) -> list[str]:
    if ctx.caller.role.allows(Role.POOL_ADMIN):
        return tx.refs("session")
    return tx.find("session", "this_user", ctx.caller.user)


@handles("session.get_all")
def get_all(ctx: Context) -> list[str]:
    with ctx.db.read() as tx:
        return _visible(ctx, tx)


@handles("session.get_all_records")
def get_all_records(ctx: Context) -> dict[str, dict[str, Any]]:
    with ctx.db.read() as tx:
        return {ref: ctx.records.record(tx, "session", ref) for ref in _visible(ctx, tx)}


@handles("session.get_all_records_where")
def get_all_records_where(ctx: Context, expr: str) -> dict[str, dict[str, Any]]:
    with ctx.db.read() as tx:
        chosen = where.select(tx, CLASSES["session"], expr, _visible(ctx, tx))
        return {ref: ctx.records.record(tx, "session", ref) for ref in chosen}


@handles("session.get_by_uuid")
def get_by_uuid(ctx: Context, uuid: str) -> str:
    with ctx.db.read() as tx:
        ref = tx.ref_of_uuid("session", uuid)
        if not may_read(ctx.caller, tx.get_field("session", ref, "this_user")):
            raise UuidInvalid("session", uuid)
    return ref


def _reader(sig: Signature) -> Callable[[Context, str], Any]:
    """``sig`` (get_record or a field getter), answered only for a session the caller may read."""

    def read(ctx: Context, ref: str) -> Any:
        with ctx.db.read() as tx:
            if not may_read(ctx.caller, tx.get_field("session", tx.check("session", ref), "this_user")):
                raise HandleInvalid("session", ref)
        return implicit.call(ctx, sig, [ref])

    return read


for _sig in signatures("session").values():
    if _sig.kind in ("get_record", "get"):
        handles(_sig.wire_name)(_reader(_sig))


@handles("session.get_all_subject_identifiers")
def get_all_subject_identifiers(ctx: Context) -> list[str]:
    """Subjects are users of an external directory (AD); Farside's pool has none, so none are
    logged in: xapi's answer without external authentication."""
    return []

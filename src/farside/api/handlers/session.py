"""session: logout and password change (login is the dispatcher's, as it needs no session)."""

from __future__ import annotations

from farside.api.context import Context
from farside.api.registry import handles
from farside.db import users
from farside.errors import SessionAuthenticationFailed


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

"""pool: its guest agent configuration, login thread counts, licence state and extensions.

Farside has one edition and no licences: the licence state is the hosts' edition (``free`` where a
host names none) with no expiry, as xapi reports an unlicensed pool that never expires.
"""

from __future__ import annotations

from farside.api import implicit
from farside.api.context import Context
from farside.api.registry import handles
from farside.errors import InvalidValue

UNLICENSED_EDITION = "free"


@handles("pool.add_to_guest_agent_config")
def add_to_guest_agent_config(ctx: Context, pool: str, key: str, value: str) -> str:
    with ctx.db.write() as tx:
        implicit.add_to_map(tx, "pool", tx.check("pool", pool), "guest_agent_config", key, value)
    return ""


@handles("pool.remove_from_guest_agent_config")
def remove_from_guest_agent_config(ctx: Context, pool: str, key: str) -> str:
    with ctx.db.write() as tx:
        implicit.remove_from_map(tx, "pool", tx.check("pool", pool), "guest_agent_config", key)
    return ""


def _set_threads(ctx: Context, pool: str, field: str, value: int) -> str:
    # xapi refuses fewer than one thread; Farside keeps the value (its logins run on their own
    # LOGIN_VERIFY_THREADS, config.py) so that clients read back what they set.
    if value < 1:
        raise InvalidValue(field, str(value))
    with ctx.db.write() as tx:
        tx.set_fields("pool", tx.check("pool", pool), {field: value})
    return ""


@handles("pool.set_local_auth_max_threads")
def set_local_auth_max_threads(ctx: Context, pool: str, value: int) -> str:
    return _set_threads(ctx, pool, "local_auth_max_threads", value)


@handles("pool.set_ext_auth_max_threads")
def set_ext_auth_max_threads(ctx: Context, pool: str, value: int) -> str:
    return _set_threads(ctx, pool, "ext_auth_max_threads", value)


@handles("pool.get_license_state")
def get_license_state(ctx: Context, pool: str) -> dict[str, str]:
    with ctx.db.read() as tx:
        tx.check("pool", pool)
        editions = {tx.get_field("host", h, "edition") or UNLICENSED_EDITION for h in tx.refs("host")}
    return {"edition": min(editions, default=UNLICENSED_EDITION), "expiry": "never"}


@handles("pool.has_extension")
def has_extension(ctx: Context, pool: str, name: str) -> bool:
    """No host of a Farside pool has extensions, so neither has the pool."""
    with ctx.db.read() as tx:
        tx.check("pool", pool)
    return False

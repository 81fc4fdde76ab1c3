"""pool: the settings that bound what paths and addresses a pool's users may make it touch.

``lun_roots`` and ``allowed_source_hosts`` are Farside fields that only pool-admin may set
(docs/storage.md, docs/dr.md); these handlers replace the generic setters so that every value is
checked before it is stored.
"""

from __future__ import annotations

from collections.abc import Callable

from farside.api.context import Context
from farside.api.registry import handles
from farside.dr.session import source_hosts
from farside.errors import InvalidValue
from farside.storage.roots import check_roots


def _hosts(values: list[str]) -> list[str]:
    try:
        return source_hosts(values)
    except ValueError as exc:
        raise InvalidValue("allowed_source_hosts", str(exc)) from None


def _set(ctx: Context, pool: str, field: str, values: list[str]) -> str:
    with ctx.db.write() as tx:
        tx.set_fields("pool", tx.check("pool", pool), {field: values})
    return ""


def _add(ctx: Context, pool: str, field: str, checked: Callable[[list[str]], list[str]], value: str) -> str:
    with ctx.db.write() as tx:
        current: list[str] = tx.get_field("pool", tx.check("pool", pool), field)
        tx.set_fields("pool", pool, {field: list(dict.fromkeys([*current, *checked([value])]))})
    return ""


@handles("pool.set_lun_roots")
def set_lun_roots(ctx: Context, pool: str, value: list[str]) -> str:
    return _set(ctx, pool, "lun_roots", check_roots(value))


@handles("pool.add_lun_roots")
def add_lun_roots(ctx: Context, pool: str, value: str) -> str:
    return _add(ctx, pool, "lun_roots", check_roots, value)


@handles("pool.set_allowed_source_hosts")
def set_allowed_source_hosts(ctx: Context, pool: str, value: list[str]) -> str:
    return _set(ctx, pool, "allowed_source_hosts", _hosts(value))


@handles("pool.add_allowed_source_hosts")
def add_allowed_source_hosts(ctx: Context, pool: str, value: str) -> str:
    return _add(ctx, pool, "allowed_source_hosts", _hosts, value)

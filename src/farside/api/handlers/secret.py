"""secret: ``introduce`` (a secret with a uuid given, as a DR site or a script restores one).

Everything else (create, destroy, get_value, set_value) is generic; the class needs pool-admin
for all of it (model/classes/secret.py).
"""

from __future__ import annotations

import uuid as uuidlib

from farside.api import implicit
from farside.api.context import Context
from farside.api.registry import handles
from farside.errors import InvalidValue
from farside.model import CLASSES


@handles("secret.introduce")
def introduce(ctx: Context, uuid: str, value: str, other_config: dict[str, str]) -> str:
    try:
        canonical = str(uuidlib.UUID(uuid))
    except ValueError:
        raise InvalidValue("uuid", uuid) from None
    with ctx.db.write() as tx:
        if tx.find("secret", "uuid", canonical):
            raise InvalidValue("uuid", uuid)
        fields = implicit.checked_fields(tx, CLASSES["secret"], {"value": value, "other_config": other_config})
        return tx.create("secret", {**fields, "uuid": canonical})

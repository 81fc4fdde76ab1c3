"""host: disabled for maintenance, no new VM starts or resumes on it; running VMs carry on (as xapi).

The flag is the host's ``enabled`` field, kept in the pool database, so a disabled host stays
disabled across server restarts until host.enable, as a host disabled by its user does in xapi.
"""

from __future__ import annotations

from farside.api.context import Context
from farside.api.registry import handles


def _set_enabled(ctx: Context, host: str, enabled: bool) -> str:
    with ctx.db.write() as tx:
        tx.set_fields("host", tx.check("host", host), {"enabled": enabled})
    return ""


@handles("host.disable")
def disable(ctx: Context, host: str) -> str:
    return _set_enabled(ctx, host, False)


@handles("host.enable")
def enable(ctx: Context, host: str) -> str:
    return _set_enabled(ctx, host, True)

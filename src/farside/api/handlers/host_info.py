"""host: the reads that have a true answer on a Farside host (methods, memory, extensions)."""

from __future__ import annotations

from farside.api.context import Context
from farside.api.registry import handles
from farside.errors import OperationNotAllowed
from farside.model.messages import role_table


@handles("host.list_methods")
def list_methods(ctx: Context) -> list[str]:
    """Every message this server implements, by wire name (refused ones are not methods it has)."""
    return sorted(role_table())


def _check(ctx: Context, host: str) -> str:
    with ctx.db.read() as tx:
        return tx.check("host", host)


@handles("host.compute_free_memory")
def compute_free_memory(ctx: Context, host: str) -> int:
    """What VM.start may still claim: free memory less the running VMs' bookings and the host's reserve."""
    _check(ctx, host)
    return max(ctx.services.vms.free_memory(), 0)


@handles("host.compute_memory_overhead")
def compute_memory_overhead(ctx: Context, host: str) -> int:
    with ctx.db.read() as tx:
        return int(tx.get_field("host", tx.check("host", host), "memory_overhead"))


@handles("host.has_extension")
def has_extension(ctx: Context, host: str, name: str) -> bool:
    """No extension is installed on a Farside host (xapi's host extensions are dom0 scripts)."""
    _check(ctx, host)
    return False


@handles("host.get_server_certificate")
def get_server_certificate(ctx: Context, host: str) -> str:
    """The certificate (PEM) the server presents over HTTPS; never its key."""
    _check(ctx, host)
    config = ctx.services.config
    if not config.tls:
        raise OperationNotAllowed("This server serves plain HTTP and presents no certificate (start it with --tls).")
    return config.cert_path.read_text()

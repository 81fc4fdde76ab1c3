"""``GET /pool/xmldbdump`` and ``PUT /pool/xmldbdump``: the pool database, dumped and restored.

As xapi's (``xe pool-dump-database`` / ``pool-restore-database``; pool-admin only), in xapi's XML
dump format (``backup/xmldb.py``). The dump holds what the metadata VDIs hold: every persistent
object, never the users and their password hashes, the DR runs or the messages, nor sessions,
tasks and other runtime state. Its manifest names the pool and carries an HMAC under the pool's
DR key, so that a restore takes only this pool's own, unaltered dumps.

A restore (``Content-Length`` required; ``dry_run=true`` checks and counts without changing
anything) is applied in one SQLite transaction, object by object, so that every change reaches
events, record caches and the metadata VDIs as any other commit does: no restart is needed, where
xapi restarts. What the host and its processes know wins over the dump, and what would contradict
them is refused rather than done half:

- this host keeps its identity: its ``host``, ``host_metrics`` and ``host_cpu`` objects stay as
  they are, and the dump's host is taken to be this one (its refs are rewritten to this host's);
- a VM that runs or is paused keeps its power state and domid; one the dump has running but no
  QEMU runs for now comes back Halted; a VM that runs now and is not in the dump is refused
  (shut it down first), as is a plugged PBD the dump lacks or has for another SR or device;
- a PBD keeps its ``currently_attached``; one that only the dump has comes back unplugged;
- no VM may be in an operation (``OTHER_OPERATION_IN_PROGRESS``): the restore's checks and changes
  are one transaction, so none can begin in between.

Errors: ``RESTORE_INCOMPATIBLE_VERSION`` for a dump of another schema or product,
``OPERATION_NOT_ALLOWED`` for another pool's dump or one altered since it was written (or one
the running state contradicts), ``INVALID_VALUE ["database dump", reason]`` for one that is not a
dump (and the field's own type error for a bad value). Nothing is changed by a refused restore.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from farside import __version__
from farside.api.context import Services
from farside.api.http import BadRequest, Endpoint, caller_with, guarded
from farside.backup import xmldb
from farside.db import Transaction
from farside.errors import OperationNotAllowed, XenAPIFailure
from farside.model import STORED
from farside.model.roles import Role
from farside.model.types import NULL_REF, MapType, RefType, SetType, XType, now
from farside.replication import authenticity
from farside.replication.schema import REPLICATED
from farside.replication.state import SCHEMA_VERSION, full_payload

log = logging.getLogger(__name__)

# The dump's own schema: major for its layout, minor for the meaning of its records.
SCHEMA_MAJOR = 1
PRODUCT_BRAND = "Farside"
POOL_KEY, MAC_KEY = "farside_pool_uuid", "farside_mac"
# This host's own objects: facts of this machine, never taken from a dump.
HOST_CLASSES = ("host", "host_metrics", "host_cpu")
# What this host knows better than a dump: a VM's power, a PBD's plug.
_VM_RUNTIME = ("power_state", "resident_on", "domid")
# The largest dump a PUT may send (a pool of 10,000 VMs dumps to about 100 MB).
MAX_DUMP_BYTES = 512 << 20


@dataclass(frozen=True)
class Plan:
    """What a restore changes, by class: objects added, changed, removed."""

    added: dict[str, dict[str, dict[str, Any]]]
    changed: dict[str, dict[str, dict[str, Any]]]
    removed: dict[str, list[str]]

    def summary(self) -> str:
        counts = (sum(len(v) for v in d.values()) for d in (self.added, self.changed, self.removed))
        return "{} objects added, {} changed, {} removed".format(*counts)


def dump(services: Services) -> bytes:
    """The pool's database as xapi's XML dump, signed with the pool's DR key."""
    with services.db.read() as tx:
        return dump_in(services, tx)


def dump_in(services: Services, tx: Transaction) -> bytes:
    """``dump`` as read in ``tx`` (a metadata backup reads it with the VMs' exports)."""
    generation = services.db.generation
    pool = tx.get_record("pool", services.pool)
    objects = full_payload(tx, pool["uuid"], pool["name_label"], generation, now())["objects"]
    manifest = {
        "schema_major_vsn": str(SCHEMA_MAJOR),
        "schema_minor_vsn": str(SCHEMA_VERSION),
        "generation_count": str(generation),
        "product_brand": PRODUCT_BRAND,
        "product_version": __version__,
        POOL_KEY: pool["uuid"],
    }
    manifest[MAC_KEY] = xmldb.mac(authenticity.own_key(services.config.data_dir), manifest, objects)
    return xmldb.to_xml(manifest, objects)


def restore(services: Services, data: bytes, dry_run: bool) -> Plan:
    """Check ``data`` and, unless ``dry_run``, make the pool's database what it holds."""
    parsed = xmldb.from_xml(data, REPLICATED)
    _check_origin(services, parsed)
    with services.db.read() if dry_run else services.db.write() as tx:
        plan = _plan(services, tx, parsed.objects)
        if not dry_run:
            _apply(tx, plan)
    if not dry_run:
        log.warning("pool database restored from a dump: %s", plan.summary())
    return plan


def _check_origin(services: Services, parsed: xmldb.Dump) -> None:
    manifest = parsed.manifest
    version = (manifest.get("schema_major_vsn"), manifest.get("schema_minor_vsn"), manifest.get("product_brand"))
    if version != (str(SCHEMA_MAJOR), str(SCHEMA_VERSION), PRODUCT_BRAND):
        raise XenAPIFailure("RESTORE_INCOMPATIBLE_VERSION")
    with services.db.read() as tx:
        pool_uuid = tx.get_field("pool", services.pool, "uuid")
    if manifest.get(POOL_KEY) != pool_uuid:
        raise OperationNotAllowed(
            f"The dump is of pool {manifest.get(POOL_KEY)!r}, not of this pool ({pool_uuid}); a pool database "
            "is restored onto its own pool only (other pools' VMs come back with their metadata)."
        )
    unsigned = {k: v for k, v in manifest.items() if k != MAC_KEY}
    expected = xmldb.mac(authenticity.own_key(services.config.data_dir), unsigned, parsed.objects)
    if not xmldb.same_mac(expected, manifest.get(MAC_KEY, "")):
        raise OperationNotAllowed("The dump is not authentic: it was altered since this pool wrote it.")


def _plan(services: Services, tx: Transaction, objects: dict[str, dict[str, dict[str, Any]]]) -> Plan:
    hosts = list(objects.get("host", {}))
    pools = list(objects.get("pool", {}))
    if len(hosts) != 1 or pools != [services.pool]:
        raise xmldb.DumpInvalid("a dump of this pool has its one pool and one host")
    this_host = {hosts[0]: services.host}
    added: dict[str, dict[str, dict[str, Any]]] = {}
    changed: dict[str, dict[str, dict[str, Any]]] = {}
    removed: dict[str, list[str]] = {}
    # This host's control domain (and its metrics) is the host's own, as its host record: no dump
    # holds it (nor any metadata VDI), and a restore leaves it.
    dom0 = tx.get_field("host", services.host, "control_domain")
    own = {dom0, tx.get_field("VM", dom0, "metrics")} if tx.exists("VM", dom0) else set()
    for cls, fields in REPLICATED.items():
        if cls in HOST_CLASSES:
            continue
        wanted = {
            ref: _rehost(cls, record, this_host) for ref, record in objects.get(cls, {}).items() if ref not in own
        }
        current = {ref: r for ref, r in tx.select(cls, tuple(fields)).items() if ref not in own}
        _keep_runtime(cls, tx, wanted, current)
        added[cls] = {ref: r for ref, r in wanted.items() if ref not in current}
        changed[cls] = {
            ref: {k: v for k, v in r.items() if current[ref].get(k) != v}
            for ref, r in wanted.items()
            if ref in current and any(current[ref].get(k) != v for k, v in r.items())
        }
        removed[cls] = [ref for ref in current if ref not in wanted]
    _check_running(services, tx, removed, changed)
    return Plan(added, changed, removed)


def _rehost(cls: str, record: dict[str, Any], this_host: dict[str, str]) -> dict[str, Any]:
    """The record with references to the dump's host turned into references to this host."""
    c = STORED[cls]
    return {name: _swap(c.field(name).type, value, this_host) for name, value in record.items()}


def _swap(xtype: XType, value: Any, refs: dict[str, str]) -> Any:
    if isinstance(xtype, RefType) and xtype.target == "host":
        return refs.get(value, value)
    if isinstance(xtype, SetType):
        return [_swap(xtype.element, v, refs) for v in value]
    if isinstance(xtype, MapType):
        return {_swap(xtype.key, k, refs): _swap(xtype.value, v, refs) for k, v in value.items()}
    return value


def _keep_runtime(cls: str, tx: Transaction, wanted: dict[str, dict[str, Any]], current: dict[str, Any]) -> None:
    if cls == "VM":
        for ref, record in wanted.items():
            if ref in current:
                record.update({k: current[ref][k] for k in _VM_RUNTIME if k in current[ref]})
            elif record.get("power_state") in ("Running", "Paused"):
                record.update({"power_state": "Halted", "resident_on": NULL_REF, "domid": -1})
    elif cls == "PBD":
        for ref, record in wanted.items():
            record["currently_attached"] = bool(current[ref]["currently_attached"]) if ref in current else False


def _check_running(services: Services, tx: Transaction, removed: dict[str, list[str]],
                   changed: dict[str, dict[str, dict[str, Any]]]) -> None:  # fmt: skip
    # In the restore's own transaction: no operation can claim a VM between this check and the commit.
    busy = tx.select("VM", ("current_operations",))
    for vm, record in busy.items():
        if record["current_operations"]:
            raise XenAPIFailure("OTHER_OPERATION_IN_PROGRESS", "VM", vm)
    for vm in removed.get("VM", []):
        if tx.get_field("VM", vm, "power_state") != "Halted":
            name = tx.get_field("VM", vm, "name_label")
            raise OperationNotAllowed(f"VM {name!r} ({vm}) is not halted and is not in the dump: shut it down first.")
    for pbd in removed.get("PBD", []) + [
        p for p, r in changed.get("PBD", {}).items() if set(r) & {"SR", "device_config"}
    ]:
        if tx.get_field("PBD", pbd, "currently_attached"):
            raise OperationNotAllowed(
                f"PBD {pbd} is plugged and the dump lacks it or has it otherwise: unplug it first."
            )
    active = [vdi for vdi in removed.get("VDI", []) if services.metadata.replicator.active(vdi)]
    if active:
        raise OperationNotAllowed(f"Metadata VDI {active[0]} is being written and the dump lacks it.")


def _apply(tx: Transaction, plan: Plan) -> None:
    for cls, refs in plan.removed.items():
        for ref in refs:
            tx.destroy(cls, ref)
    for cls, records in plan.added.items():
        for ref, record in records.items():
            tx.create(cls, record, ref=ref)  # allowed_operations follow (api/operations.py)
    for cls, records in plan.changed.items():
        for ref, values in records.items():
            tx.set_fields(cls, ref, values)


# -- HTTP --------------------------------------------------------------------------------------


def get_dump(services: Services) -> Endpoint:
    @guarded
    async def endpoint(request: Request) -> Response:
        caller_with(services, request, Role.POOL_ADMIN, "http/get_pool_xmldbdump")
        data = await anyio.to_thread.run_sync(dump, services)
        return Response(data, media_type="text/xml")

    return endpoint


def put_dump(services: Services) -> Endpoint:
    @guarded
    async def endpoint(request: Request) -> Response:
        caller_with(services, request, Role.POOL_ADMIN, "http/put_pool_xmldbdump")
        declared = request.headers.get("content-length", "")
        if not declared.isdigit():
            raise BadRequest("a database restore needs a Content-Length")
        if int(declared) > MAX_DUMP_BYTES:
            raise BadRequest(f"a database dump is at most {MAX_DUMP_BYTES} bytes")
        dry_run = request.query_params.get("dry_run", "false").lower() == "true"
        data = await request.body()
        if len(data) != int(declared):
            raise BadRequest(f"the body has {len(data)} bytes, not the {declared} declared")
        plan = await anyio.to_thread.run_sync(restore, services, data, dry_run)
        return PlainTextResponse(("dry run: would be " if dry_run else "restored: ") + plan.summary() + "\n")

    return endpoint

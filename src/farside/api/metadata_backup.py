"""Pool metadata backup, xapi's ``xe-backup-metadata`` and ``xe-restore-metadata`` (pool-admin only).

``POST /backup_metadata?sr_uuid=&keep=12`` writes one generation into the SR's "Pool Metadata
Backup" VDI (made when missing, its uuid derived from the SR's as xapi derives it): the pool
database dump, every VM's metadata export, the SRs' VM lists and the vApps, all read in one
database read transaction, so a generation is one moment of the pool however it changes meanwhile.
The image is rewritten into a fresh file on the LUN and renamed over the old one, keeping the last
``keep`` generations (``backup/generations.py`` has the layout).

``GET /metadata_backups?sr_uuid=`` lists the generations. ``POST /restore_metadata?sr_uuid=&date=
&mode=all|sr&dry_run=`` imports the generation's VMs (all of them, or those with a disk on this SR)
as ``PUT /import_metadata?restore=true`` does, uuids kept, onto this pool or a new one that has
the SR plugged, then the vApps with their uuids; a VM that cannot be restored is an error in the
report and the others go on, as xapi's script does (its exit code is the number of errors).
"""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path
from typing import Any

import anyio.to_thread
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from farside.api import xmldbdump
from farside.api.context import Services
from farside.api.http import Endpoint, caller_with, guarded
from farside.api.sessions import Caller
from farside.api.storage import new_vdi, vdi_busy
from farside.api.transfers import Transfer
from farside.api.xva import exporter, importer
from farside.backup import generations, tar
from farside.backup.generations import Generation
from farside.db import Transaction
from farside.dr.recovery import attach_appliance
from farside.errors import FarsideError, InvalidValue, OperationNotAllowed, XenAPIFailure
from farside.model.roles import Role
from farside.model.types import NULL_REF
from farside.storage import image
from farside.storage.errors import VdiInUse
from farside.storage.files import fsync_dir
from farside.storage.lun import Lun, recorded_format

NAME_LABEL = "Pool Metadata Backup"
OTHER_CONFIG = {"ctxs-pool-backup": "true"}
VDI_SIZE = 1 << 30  # as xapi's
DEFAULT_KEEP, MAX_KEEP = 12, 1000
MODES = ("all", "sr")
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# One backup at a time in this server: two would each rename their image over the other's.
_WRITING = threading.Lock()


# -- backup ------------------------------------------------------------------------------------


def backup(services: Services, sr: str, keep: int) -> dict[str, Any]:
    """Write a new generation into the SR's backup VDI, keeping the newest ``keep``."""
    if not 1 <= keep <= MAX_KEEP:
        raise InvalidValue("keep", str(keep))
    with _WRITING:
        vdi, lun = _backup_vdi(services, sr)
        with services.db.read() as tx:
            record = tx.get_record("VDI", vdi)
            if vdi_busy(tx, vdi):
                raise VdiInUse(vdi)
        path = lun.image_path(record["location"])
        with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as source:
            old = generations.index(source)
            date = _new_date({g.date for g in old})
            files, summary = _snapshot(services)
            cut = max(len(old) - (keep - 1), 0)  # the new generation is one of the ``keep``
            kept, removed = old[cut:], old[:cut]
            needed = generations.size(kept, files)
            if needed > record["virtual_size"]:
                raise XenAPIFailure("VDI_TOO_SMALL", vdi, str(needed))
            _rewrite(lun, record, source, kept, date, files)
    return {
        "vdi": record["uuid"],
        "date": date,
        **summary,
        "kept": [g.date for g in kept] + [date],
        "removed": [g.date for g in removed],
    }


def _backup_vdi(services: Services, sr: str) -> tuple[str, Lun]:
    """The SR's backup VDI (made now if missing) and the SR's LUN."""
    with services.db.read() as tx:
        lun = services.storage.attached_lun(tx, sr)
        uuid = generations.vdi_uuid(tx.get_field("SR", sr, "uuid"))
        found = tx.find("VDI", "uuid", uuid)
        if found:
            _check_vdi(tx, found[0], sr)
            return found[0], lun
    fields = {
        "name_label": NAME_LABEL,
        "name_description": "Pool metadata backups (farside backup-metadata)",
        "type": "user",
        "sharable": False,
        "read_only": False,
        "sm_config": {"type": "raw"},
        "other_config": dict(OTHER_CONFIG),
    }

    def make(path: Path, fmt: str) -> None:
        image.create(path, fmt, VDI_SIZE)

    return new_vdi(services.db, services.pool, sr, lun, fields, make, vdi_uuid=uuid), lun


def _check_vdi(tx: Transaction, vdi: str, sr: str) -> None:
    record = tx.get_record("VDI", vdi)
    if record["SR"] != sr:
        raise OperationNotAllowed(f"VDI {record['uuid']} (this SR's backup VDI uuid) is on another SR")
    if recorded_format(record["location"]) != "raw":
        raise OperationNotAllowed(f"VDI {record['uuid']} is not a raw image: it is no metadata backup VDI")


def _new_date(taken: set[str]) -> str:
    """Now, as a generation's name; a second later when a generation of this second exists."""
    while (date := time.strftime(generations.DATE_FORMAT, time.gmtime())) in taken:
        time.sleep(1.0 - time.time() % 1.0)
    return date


def _snapshot(services: Services) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The files of a generation, all read in one transaction: one moment of the pool."""
    files: dict[str, bytes] = {}
    with services.db.read() as tx:
        pool = tx.get_record("pool", services.pool)
        hostname = tx.get_field("host", services.host, "hostname")
        files[f"{pool['uuid']}.db"] = xmldbdump.dump_in(services, tx)
        vms: dict[str, str] = {}
        by_sr: dict[str, list[str]] = {}
        for vm, record in tx.get_records("VM").items():
            if record["is_control_domain"] or record["is_a_snapshot"] or record["is_default_template"]:
                continue
            vms[record["uuid"]] = record["name_label"]
            files[f"all/{record['uuid']}.vmmeta"] = exporter.metadata(tx, vm, hostname)
            for vdi in exporter.disk_vdis(tx, vm):
                sr_uuid = tx.get_field("SR", tx.get_field("VDI", vdi, "SR"), "uuid")
                by_sr.setdefault(sr_uuid, [])
                if record["uuid"] not in by_sr[sr_uuid]:
                    by_sr[sr_uuid].append(record["uuid"])
        for sr_uuid, members in by_sr.items():
            files[f"by-sr/{sr_uuid}"] = "".join(f"{u}\n" for u in members).encode()
        vapps = [
            {
                "uuid": r["uuid"],
                "name_label": r["name_label"],
                "name_description": r["name_description"],
                "VMs": [tx.get_field("VM", v, "uuid") for v in r["VMs"] if tx.exists("VM", v)],
            }
            for r in tx.get_records("VM_appliance").values()
        ]
        files[generations.VAPPS] = orjson.dumps(vapps)
        manifest = {"pool_uuid": pool["uuid"], "pool_name": pool["name_label"], "VMs": vms, "vApps": len(vapps)}
    files = {generations.MANIFEST: orjson.dumps(manifest), **files}
    return files, {"vms": len(vms), "vapps": len(vapps)}


def _rewrite(lun: Lun, record: dict[str, Any], source: io.BufferedReader, kept: list[Generation], date: str,
             files: dict[str, bytes]) -> None:  # fmt: skip
    """The new image in a fresh file on the LUN, renamed over the VDI's image once it is on disk."""
    path = lun.image_path(record["location"])
    fresh = lun.path / f".metadata-backup-{record['uuid']}.new"
    fresh.unlink(missing_ok=True)  # what a crash left
    try:
        with open(os.open(fresh, _NEW_FILE, 0o600), "wb") as out:
            generations.write(out, source, kept, date, files)
            out.truncate(record["virtual_size"])
            out.flush()
            os.fsync(out.fileno())
        os.replace(fresh, path)
        fsync_dir(lun.path)
    except BaseException:
        fresh.unlink(missing_ok=True)
        raise


# -- reading -----------------------------------------------------------------------------------


class _Backup:
    """The SR's backup VDI opened for reading: its generations (the image read once, from one fd)."""

    def __init__(self, services: Services, sr: str) -> None:
        with services.db.read() as tx:
            lun = services.storage.attached_lun(tx, sr)
            self.sr_uuid = tx.get_field("SR", sr, "uuid")
            self.vdi_uuid = generations.vdi_uuid(self.sr_uuid)
            vdi = tx.ref_of_uuid("VDI", self.vdi_uuid)
            _check_vdi(tx, vdi, sr)
            location = tx.get_field("VDI", vdi, "location")
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fh = open(os.open(lun.image_path(location), flags), "rb")  # noqa: SIM115 - closed by __exit__
        try:
            self.generations = generations.index(self._fh)
        except BaseException:
            self._fh.close()
            raise

    def __enter__(self) -> _Backup:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()

    def generation(self, date: str) -> Generation:
        for g in self.generations:
            if g.date == date:
                return g
        raise InvalidValue("date", date)

    def read(self, generation: Generation, name: str) -> bytes:
        member = generation.members.get(name)
        if member is None:
            raise generations.BackupInvalid(f"generation {generation.date} has no {name}")
        return generations.read(self._fh, member)

    def json(self, generation: Generation, name: str) -> Any:
        try:
            return orjson.loads(self.read(generation, name))
        except orjson.JSONDecodeError as exc:
            raise generations.BackupInvalid(f"{generation.date}/{name}: {exc}") from None


def listing(services: Services, sr: str) -> dict[str, Any]:
    with _Backup(services, sr) as b:
        found = []
        for g in b.generations:
            manifest = b.json(g, generations.MANIFEST)
            found.append({"date": g.date, "pool_uuid": manifest.get("pool_uuid", ""),
                          "pool_name": manifest.get("pool_name", ""), "vms": len(g.vmmeta()),
                          "vapps": manifest.get("vApps", 0)})  # fmt: skip
        return {"vdi": b.vdi_uuid, "generations": found}


# -- restore -----------------------------------------------------------------------------------


def restore(services: Services, caller: Caller, sr: str, date: str, mode: str, dry_run: bool) -> dict[str, Any]:
    """Import the generation's VMs (``mode`` all, or sr: those with a disk on this SR), then its vApps."""
    if mode not in MODES:
        raise InvalidValue("mode", mode)
    with _Backup(services, sr) as b:
        g = b.generation(date)
        exports = g.vmmeta()
        if mode == "sr":
            listed = b.read(g, f"by-sr/{b.sr_uuid}").decode() if f"by-sr/{b.sr_uuid}" in g.members else ""
            exports = {u: m for u, m in exports.items() if u in listed.split()}
        vapps = b.json(g, generations.VAPPS)
        transfer = Transfer.begin(services.db, services.tasks, caller, "", "Restore of pool metadata")
        try:
            vms = [_restore_vm(services, transfer, uuid, b.read(g, f"all/{uuid}.vmmeta"), dry_run) for uuid in exports]
            restored = {v["uuid"] for v in vms if "error" not in v}
            apps = _restore_vapps(services, vapps, restored, dry_run)
        except BaseException as exc:
            transfer.fail(exc)
            raise
        transfer.succeed()
    errors = sum("error" in v for v in vms)
    return {"date": date, "dry_run": dry_run, "mode": mode, "vms": vms, "vapps": apps, "errors": errors}


def _restore_vm(services: Services, transfer: Transfer, uuid: str, export: bytes, dry_run: bool) -> dict[str, Any]:
    outcome: dict[str, Any] = {"uuid": uuid, "name": ""}
    options = importer.Options(restore=True, metadata=True, dry_run=dry_run)
    try:
        header = importer.read_header(tar.TarReader(io.BytesIO(export).read))
        named = [o.snapshot for o in header.of_class("VM") if o.snapshot.get("uuid") == uuid]
        if not named:
            raise generations.BackupInvalid(f"all/{uuid}.vmmeta holds no VM {uuid}")
        outcome["name"] = named[0].get("name_label", "")
        importer.Import(services, NULL_REF, options, transfer).run(io.BytesIO(export))
    except FarsideError as exc:
        outcome["error"] = exc.describe()
    return outcome


def _restore_vapps(services: Services, vapps: Any, restored: set[str], dry_run: bool) -> list[dict[str, Any]]:
    """Each vApp with the VMs of it this pool has now, its uuid kept (one transaction)."""
    if not isinstance(vapps, list):
        raise generations.BackupInvalid(f"{generations.VAPPS} is not a list")
    done = []
    with services.db.read() if dry_run else services.db.write() as tx:
        for record in vapps:
            try:
                fields = {k: str(record[k]) for k in ("uuid", "name_label", "name_description")}
                members = [str(u) for u in record["VMs"]]
            except (KeyError, TypeError):
                raise generations.BackupInvalid(f"{generations.VAPPS} holds a record that is not a vApp") from None
            if generations.UUID.fullmatch(fields["uuid"]) is None:
                raise generations.BackupInvalid(f"{generations.VAPPS} names a vApp by {fields['uuid']!r}, no uuid")
            # A dry run made no VM: count those it would have restored.
            present = [u for u in members if (dry_run and u in restored) or tx.find("VM", "uuid", u)]
            if not present:
                continue
            if not dry_run:
                attach_appliance(tx, fields, [tx.find("VM", "uuid", u)[0] for u in present])
            done.append({"uuid": fields["uuid"], "name": fields["name_label"], "vms": present})
    return done


# -- HTTP --------------------------------------------------------------------------------------


def _sr(services: Services, request: Request) -> str:
    sr_id, sr_uuid = request.query_params.get("sr_id", ""), request.query_params.get("sr_uuid", "")
    with services.db.read() as tx:
        if sr_id:
            return tx.check("SR", sr_id)
        return tx.ref_of_uuid("SR", sr_uuid)


def _int(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name, str(default))
    if not text.isdigit():
        raise InvalidValue(name, text)
    return int(text)


def backup_endpoint(services: Services) -> Endpoint:
    @guarded
    async def endpoint(request: Request) -> Response:
        caller_with(services, request, Role.POOL_ADMIN, "http/post_backup_metadata")
        sr, keep = _sr(services, request), _int(request, "keep", DEFAULT_KEEP)
        return JSONResponse(await anyio.to_thread.run_sync(backup, services, sr, keep))

    return endpoint


def list_endpoint(services: Services) -> Endpoint:
    @guarded
    async def endpoint(request: Request) -> Response:
        caller_with(services, request, Role.POOL_ADMIN, "http/get_metadata_backups")
        return JSONResponse(await anyio.to_thread.run_sync(listing, services, _sr(services, request)))

    return endpoint


def restore_endpoint(services: Services) -> Endpoint:
    @guarded
    async def endpoint(request: Request) -> Response:
        caller = caller_with(services, request, Role.POOL_ADMIN, "http/post_restore_metadata")
        q = request.query_params
        sr, dry_run = _sr(services, request), q.get("dry_run", "false").lower() == "true"
        report = await anyio.to_thread.run_sync(
            restore, services, caller, sr, q.get("date", ""), q.get("mode", "all"), dry_run
        )
        return JSONResponse(report)

    return endpoint

"""Database replication as XenAPI exposes it (xenapi-dr.md §2.3), and foreign metadata on plugged SRs.

``SR.enable_database_replication`` finds or creates this pool's metadata VDI on the SR and starts
writing to it; replication restarts by itself when the server starts and when the SR is plugged
again. Metadata VDIs of other pools on a plugged SR are read into the DR cache, and per source
pool the ones with the highest generation get ``metadata_latest``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from farside.api.sessions import Caller, SessionStore
from farside.api.storage import ISO_SR_TYPE, StorageService, new_vdi
from farside.db import Database, Transaction
from farside.errors import OperationNotAllowed, XenAPIFailure
from farside.replication import authenticity, state
from farside.replication import format as fmt
from farside.replication.authenticity import Keyring
from farside.replication.foreign import ForeignCache, ForeignCopy, read_copy
from farside.replication.replicator import MAX_TARGETS, ORIGIN, Replicator
from farside.storage import image
from farside.storage.lun import Lun

log = logging.getLogger(__name__)

NAME_LABEL = "Metadata for DR"
NAME_DESCRIPTION = "Used for disaster recovery"


def refuse_user_write(vdi_type: object, what: str) -> None:
    """Metadata VDIs are written by the pool's replicator alone: a user who could create, fill or
    copy one could plant metadata that a DR site reads as the pool's (issue 13, point 4)."""
    if vdi_type == "metadata":
        raise OperationNotAllowed(
            f"{what} of a metadata VDI: metadata VDIs are written only by the pool's replicator "
            "(use SR.enable_database_replication)"
        )


class MetadataService:
    def __init__(
        self, db: Database, storage: StorageService, sessions: SessionStore, pool: str, half_size: int, keys: Keyring
    ) -> None:
        self._db = db
        self._storage = storage
        self._sessions = sessions
        self._pool = pool
        self.keys = keys
        self.replicator = Replicator(db, pool, half_size, keys.own)
        self.foreign = ForeignCache()
        # One change of targets at a time: finding and creating a metadata VDI, counting targets.
        self._lock = threading.RLock()
        storage.after_plug.append(self.sr_plugged)
        storage.before_unplug.append(self.sr_unplugging)
        storage.after_scan.append(self.sr_plugged)

    @property
    def vdi_size(self) -> int:
        return fmt.HEADER_SIZE + 2 * self.replicator.half_size

    # -- SR.*_database_replication ------------------------------------------------------------

    def assert_supports(self, sr: str) -> None:
        with self._db.read() as tx:
            record = tx.get_record("SR", tx.check("SR", sr))
            hosts = tx.refs("host")
            pbds = [tx.get_record("PBD", p) for p in record["PBDs"]]
            for host in hosts:
                if not any(p["host"] == host and p["currently_attached"] for p in pbds):
                    raise XenAPIFailure("SR_HAS_NO_PBDS", sr)
            managers = tx.find("SM", "type", record["type"])
            if not managers:
                raise XenAPIFailure("INTERNAL_ERROR", f"no SM record for SR type {record['type']}")
            if "SR_METADATA" not in tx.get_field("SM", managers[0], "capabilities"):
                raise XenAPIFailure("SR_OPERATION_NOT_SUPPORTED", sr)

    def enable(self, sr: str) -> None:
        with self._lock:
            self._enable(sr)

    def _enable(self, sr: str) -> None:
        self.assert_supports(sr)
        with self._db.read() as tx:
            existing = self._own_vdis(tx, sr)
            lun = self._storage.attached_lun(tx, sr)
        if len(self.replicator.targets) >= MAX_TARGETS and not any(self.replicator.active(v) for v in existing):
            raise XenAPIFailure("NO_MORE_REDO_LOGS_ALLOWED")
        vdi = existing[0] if existing else self._create_vdi(sr, lun)
        self._start(vdi, lun)

    def _create_vdi(self, sr: str, lun: Lun) -> str:
        fields: dict[str, Any] = {
            "name_label": NAME_LABEL,
            "name_description": NAME_DESCRIPTION,
            "type": "metadata",
            "sharable": False,
            "read_only": False,
            "sm_config": {"type": "raw"},
            "metadata_of_pool": self._pool,
            "metadata_latest": False,
        }
        try:
            return new_vdi(self._db, self._pool, sr, lun, fields, lambda path, f: image.create(path, f, self.vdi_size))
        except XenAPIFailure as exc:
            raise XenAPIFailure("CANNOT_ENABLE_REDO_LOG", exc.describe()) from exc

    def _start(self, vdi: str, lun: Lun) -> None:
        with self._db.read() as tx:
            location = tx.get_field("VDI", vdi, "location")
        try:
            self.replicator.start(vdi, lun.image_path(location))
        except OSError as exc:
            raise XenAPIFailure("CANNOT_ENABLE_REDO_LOG", str(exc)) from exc

    def disable(self, sr: str) -> None:
        """Stop replicating to this pool's metadata VDIs on the SR and destroy them."""
        with self._lock:
            self._disable(sr)

    def _disable(self, sr: str) -> None:
        with self._db.read() as tx:
            tx.check("SR", sr)
            vdis = self._own_vdis(tx, sr)
            lun = self._storage.attached_lun(tx, sr) if vdis else None
        for vdi in vdis:
            self.replicator.stop(vdi)
            # An ordinary change: the pool's other metadata VDIs must learn this one is gone.
            with self._db.write() as tx:
                record = tx.get_record("VDI", vdi)
                tx.destroy("VDI", vdi)
            if lun is not None:
                lun.remove_vdi(record["uuid"])
                lun.image_path(record["location"]).unlink(missing_ok=True)

    def _own_vdis(self, tx: Transaction, sr: str) -> list[str]:
        return [
            v
            for v in tx.get_field("SR", sr, "VDIs")
            if tx.get_field("VDI", v, "type") == "metadata"
            and tx.get_field("VDI", v, "metadata_of_pool") == self._pool
            and tx.get_field("VDI", v, "virtual_size") >= self.vdi_size
        ]

    # -- SR plug and unplug, and start-up -------------------------------------------------------

    def sr_plugged(self, sr: str) -> None:
        """Re-arm replication to our metadata VDIs on the SR; read the foreign ones."""
        with self._lock:
            self._sr_plugged(sr)

    def _sr_plugged(self, sr: str) -> None:
        with self._db.read() as tx:
            lun = self._storage.attached_lun(tx, sr)
            mine = self._own_vdis(tx, sr)
            foreign = [
                (v, tx.get_field("VDI", v, "location"))
                for v in tx.get_field("SR", sr, "VDIs")
                if tx.get_field("VDI", v, "type") == "metadata" and v not in mine
            ]
        for vdi in mine[:1]:  # xapi uses one metadata VDI per SR
            if len(self.replicator.targets) >= MAX_TARGETS and not self.replicator.active(vdi):
                log.error("not resuming replication to %s: the pool already writes %d metadata VDIs", vdi, MAX_TARGETS)
                continue
            try:
                self._start(vdi, lun)
            except XenAPIFailure as exc:
                log.error("cannot resume replication to metadata VDI %s: %s", vdi, exc.describe())
        for vdi, location in foreign:
            try:
                copy = read_copy(vdi, lun.image_path(location), self.keys.key_for)
            except OSError as exc:
                log.warning("cannot read metadata VDI %s: %s", vdi, exc)
                self.foreign.drop(vdi)
                continue
            self.foreign.put(copy)
            _warn(copy, sr)
        self._refresh_foreign()

    def sr_unplugging(self, sr: str) -> None:
        with self._lock:
            self._sr_unplugging(sr)

    def _sr_unplugging(self, sr: str) -> None:
        with self._db.read() as tx:
            vdis = [v for v in tx.get_field("SR", sr, "VDIs") if tx.get_field("VDI", v, "type") == "metadata"]
        for vdi in vdis:
            self.replicator.stop(vdi)
            self.foreign.drop(vdi)
        with self._db.write(origin=ORIGIN) as tx:
            for vdi in vdis:
                if tx.exists("VDI", vdi):
                    tx.set_fields("VDI", vdi, {"metadata_latest": False})
        self._refresh_foreign()

    def _refresh_foreign(self) -> None:
        """metadata_latest and the farside-* keys of every foreign metadata VDI."""
        latest = self.foreign.latest()
        with self._db.write(origin=ORIGIN) as tx:
            for copy in self.foreign.all():
                if not tx.exists("VDI", copy.vdi):
                    continue
                sm_config = tx.get_field("VDI", copy.vdi, "sm_config")
                # What the DR engine's choose step reads (authenticity.screen); SR.scan's view.
                sm_config[authenticity.PROBLEMS_KEY] = "; ".join(copy.problems)
                if copy.generation >= 0:
                    sm_config.update(
                        {
                            "farside-generation": str(copy.generation),
                            "farside-written": copy.written,
                            "farside-pool-name": copy.pool_name,
                            authenticity.STATE_KEY: _state(copy),
                        }
                    )
                else:
                    sm_config.pop(authenticity.STATE_KEY, None)
                tx.set_fields("VDI", copy.vdi, {"metadata_latest": copy.vdi in latest, "sm_config": sm_config})

    def start(self) -> None:
        """At server start: a full copy to each of our metadata VDIs; read the foreign ones."""
        with self._db.read() as tx:
            plugged = [
                tx.get_field("PBD", p, "SR") for p in tx.refs("PBD") if tx.get_field("PBD", p, "currently_attached")
            ]
            plugged = [sr for sr in plugged if tx.get_field("SR", sr, "type") != ISO_SR_TYPE]  # no metadata there
        for sr in plugged:
            try:
                self.sr_plugged(sr)
            except Exception:
                log.exception("metadata on SR %s", sr)

    def close(self) -> None:
        self.replicator.close()

    # -- reading ----------------------------------------------------------------------------

    def pool_uuid_of(self, vdi: str) -> str:
        """VDI.read_database_pool_uuid: ours, a foreign pool's from the DR cache, or ""."""
        with self._db.read() as tx:
            tx.check("VDI", vdi)
            if tx.get_field("VDI", vdi, "metadata_of_pool") == self._pool:
                return str(tx.get_field("pool", self._pool, "uuid"))
        copy = self.foreign.get(vdi)
        return copy.pool_uuid if copy is not None else ""

    def read(self, path: Path) -> fmt.Snapshot:
        """The newest authenticated copy at ``path``; COULD_NOT_IMPORT_DATABASE for any other."""
        snapshot = read_snapshot(path, self.keys.key_for)
        if snapshot.authenticated is None:
            raise XenAPIFailure("COULD_NOT_IMPORT_DATABASE", authenticity.pairing_hint(snapshot.pool_uuid))
        if not snapshot.authenticated:
            raise XenAPIFailure(
                "COULD_NOT_IMPORT_DATABASE",
                f"the metadata claims pool {snapshot.pool_uuid} generation {snapshot.generation} but fails "
                "authentication under that pool's DR key: it was not written by that pool",
            )
        return snapshot

    def open_database(self, caller: Caller, vdi: str) -> str:
        """A read-only session on the newest complete copy the metadata VDI holds."""
        with self._db.read() as tx:
            record = tx.get_record("VDI", tx.check("VDI", vdi))
            if record["type"] != "metadata":
                raise XenAPIFailure("VDI_INCOMPATIBLE_TYPE", vdi, record["type"])
            path = self._storage.attached_lun(tx, record["SR"]).image_path(record["location"])
        snapshot = self.read(path)
        if snapshot.schema_version > state.SCHEMA_VERSION:
            raise XenAPIFailure(
                "COULD_NOT_IMPORT_DATABASE",
                f"the metadata was written by Farside {snapshot.farside_version} with schema "
                f"{snapshot.schema_version}; this server reads schema {state.SCHEMA_VERSION} at most",
            )
        database = state.load(snapshot.objects, f"metadata of {snapshot.pool_name} ({record['uuid']})")
        return self._sessions.login_database(caller, database, f"VDI.open_database {record['uuid']}")


def _state(copy: ForeignCopy) -> str:
    if copy.authenticated is None:
        return authenticity.UNPAIRED
    return authenticity.AUTHENTICATED if copy.authenticated else authenticity.FORGED


def _warn(copy: ForeignCopy, sr: str) -> None:
    """A log line naming the copy for each thing no torn write explains (forged, malformed)."""
    for problem in copy.problems:
        log.warning("metadata VDI %s on SR %s: %s", copy.vdi, sr, problem)


def read_snapshot(path: Path, keys: fmt.KeyLookup) -> fmt.Snapshot:
    try:
        with open(path, "rb") as fh, state.gc_paused():
            snapshot, _, _ = fmt.newest(fh, keys=keys)
    except OSError as exc:
        raise XenAPIFailure("COULD_NOT_IMPORT_DATABASE", f"cannot read {path}: {exc}") from exc
    if snapshot is None:
        raise XenAPIFailure("COULD_NOT_IMPORT_DATABASE", "the VDI holds no complete copy of a pool's metadata")
    return snapshot

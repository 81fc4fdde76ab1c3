"""DR keys: which pool wrote a metadata VDI, proven rather than claimed.

Each pool has a DR key, 32 random bytes made by ``farside init`` (or at the first start of a pool
made before keys existed), kept in its data directory (``dr-key``, mode 0600). Every metadata
record it writes carries an HMAC under that key (replication/format.py). A DR site is given the
key at pairing (``farside pool dr-key export`` at the pool, ``farside pool dr-key trust`` at the
DR site, which keeps it as ``dr-trust/<pool uuid>.key``, mode 0600). The key never crosses the
wire: no XenAPI call reads or sets it.

At the DR site, a copy is used only when the key it claims proves every record (authenticated);
a copy that fails is never used and is reported; a pool with no trusted key is not recovered
until it is paired.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any

KEY_BYTES = 32
KEY_FILE = "dr-key"
TRUST_DIR = "dr-trust"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# What a metadata VDI's sm_config says of its copy (set by the server, read by the DR engine).
STATE_KEY = "farside-authenticated"
PROBLEMS_KEY = "farside-problems"
AUTHENTICATED, FORGED, UNPAIRED = "true", "false", "no key"


class BadKey(ValueError):
    """A key file that cannot be used; the message says what to do."""


def pairing_hint(pool_uuid: str) -> str:
    return (
        f"this site holds no DR key for pool {pool_uuid}: pair the sites first (at the pool: "
        f"'farside pool dr-key export DATA_DIR --out FILE'; here: 'farside pool dr-key trust DATA_DIR "
        f"--pool-uuid {pool_uuid} --key-file FILE')"
    )


def format_key(key: bytes) -> str:
    return key.hex() + "\n"


def parse_key(text: str, source: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise BadKey(f"{source} does not hold a DR key ({2 * KEY_BYTES} hex digits, as 'dr-key export' writes)")
    return key


def write_private(path: Path, text: str) -> None:
    """``text`` into ``path``, readable by its owner alone, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read(path: Path) -> bytes | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return parse_key(text, str(path))


def own_key(data_dir: Path) -> bytes:
    """The pool's DR key, made now if the pool has none yet (a pool made by older Farside)."""
    path = data_dir / KEY_FILE
    key = _read(path)
    if key is None:
        key = secrets.token_bytes(KEY_BYTES)
        write_private(path, format_key(key))
    return key


def trust(data_dir: Path, pool_uuid: str, key: bytes) -> Path:
    """Keep ``key`` as the DR key of pool ``pool_uuid`` at this site."""
    if not _UUID.fullmatch(pool_uuid):
        raise BadKey(f"--pool-uuid {pool_uuid!r} is not a pool uuid (as 'dr-key export' prints it)")
    path = data_dir / TRUST_DIR / f"{pool_uuid}.key"
    write_private(path, format_key(key))
    return path


class Keyring:
    """The keys a pool server checks metadata with: its own and those of the pools it is paired with.

    Read from the data directory at each look-up, so that a pairing made while the server runs
    counts at the next SR plug or scan."""

    def __init__(self, data_dir: Path, pool_uuid: str) -> None:
        self.data_dir = data_dir
        self.pool_uuid = pool_uuid
        self.own = own_key(data_dir)

    def key_for(self, pool_uuid: str) -> bytes | None:
        if pool_uuid == self.pool_uuid:
            return self.own
        if not _UUID.fullmatch(pool_uuid):
            return None
        return _read(self.data_dir / TRUST_DIR / f"{pool_uuid}.key")


def screen(vdi: str, record: dict[str, Any], sr_name: str, pool_uuid: str) -> tuple[bool, str]:
    """Whether the DR engine may use this foreign metadata VDI (its record, as XenAPI gives it),
    and what to report of it ("" when nothing).

    The state is the server's (VDI.open_database checks again, so a client that skips this cannot
    open a forged copy either)."""
    config = record.get("sm_config", {})
    state = config.get(STATE_KEY, "")
    problems = config.get(PROBLEMS_KEY, "")
    named = f"metadata VDI {record.get('uuid', vdi)} on SR {sr_name}"
    claim = f"{named} claims pool {pool_uuid or '(none)'}"
    generation = config.get("farside-generation", "?")
    if state == AUTHENTICATED:
        return True, f"{claim}: {problems}; the other copies or half were used" if problems else ""
    if state == FORGED:
        return False, f"{claim} generation {generation} but fails authentication: ignored"
    if state == UNPAIRED:
        return False, f"{claim} generation {generation}, unauthenticated: ignored; {pairing_hint(pool_uuid)}"
    return False, f"{named} holds no readable copy ({problems or 'nothing found'}): ignored"

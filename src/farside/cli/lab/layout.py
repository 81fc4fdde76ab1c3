"""Where a lab keeps everything, and what ``lab up`` recorded (``lab.json``) for the other commands.

DIR/lab.json           ports, LUN names, the mirror names: what status, disaster and down read
DIR/password           root's password on both pools (0600), for --password-file
DIR/site-a, site-b     the pools' data directories (pool.db, run/, server.log, server.pid)
DIR/luns-a/LUN         site A's LUN directories, the mirrors' sources
DIR/luns-b/LUN         their copies at site B, the mirrors' targets
DIR/mirror             the mirrors' state directory (mirror.pid, mirror.log)
DIR/snapshots/LUN      mirror snapshots taken for test failovers
DIR/reflink.img        with --reflink: the XFS loop file, mounted on DIR/luns-a/reflink
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from farside.errors import FarsideError

SITES = ("a", "b")
SITE_NAMES = {"a": "Site A", "b": "Site B"}
SERVER_MARKER = "server"  # in a pool server's command line (with its data directory)
MIRROR_MARKER = "mirror run"


class LabError(FarsideError):
    """Something the lab needs did not happen; the message says what."""

    code = "LAB"

    def describe(self) -> str:
        return self.params[0]


@dataclass
class Lab:
    root: Path
    ports: dict[str, int] = field(default_factory=dict)
    luns: list[str] = field(default_factory=list)
    reflink: bool = False  # an XFS LUN in a loop file at site A (cli/lab/reflink.py)

    # -- paths -------------------------------------------------------------------------------

    @property
    def record(self) -> Path:
        return self.root / "lab.json"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    def site_dir(self, site: str) -> Path:
        return self.root / f"site-{site}"

    def luns_dir(self, site: str) -> Path:
        """The site's LUN root (farside init --lun-root)."""
        return self.root / f"luns-{site}"

    def lun_dir(self, site: str, lun: str) -> Path:
        return self.luns_dir(site) / lun

    def snapshot_dir(self, lun: str) -> Path:
        return self.root / "snapshots" / lun

    @property
    def mirror_dir(self) -> Path:
        return self.root / "mirror"

    def server_pid_file(self, site: str) -> Path:
        return self.site_dir(site) / "server.pid"

    def server_marker(self, site: str) -> str:
        return str(self.site_dir(site))

    @property
    def mirror_pid_file(self) -> Path:
        return self.mirror_dir / "mirror.pid"

    def url(self, site: str) -> str:
        return f"http://127.0.0.1:{self.ports[site]}"

    # -- the record ----------------------------------------------------------------------------

    def save(self) -> None:
        data = {"ports": self.ports, "luns": self.luns, "reflink": self.reflink}
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.record)

    @classmethod
    def load(cls, root: Path) -> Lab:
        lab = cls(root.resolve())
        try:
            data = json.loads(lab.record.read_text())
        except FileNotFoundError:
            raise ValueError(f"{root} holds no lab: make one with 'farside lab up {root}'") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{lab.record} is damaged ({exc}); 'farside lab down {root}' and up again") from None
        try:
            lab.ports = {k: int(v) for k, v in data["ports"].items()}
            lab.luns = list(data["luns"])
            lab.reflink = bool(data.get("reflink", False))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(
                f"{lab.record} is damaged (bad or missing {exc}); 'farside lab down {root}' and up again"
            ) from None
        return lab

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        out["root"] = str(self.root)
        return out

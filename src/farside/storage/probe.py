"""SR.probe for file SRs: what a LUN directory holds, in XenServer's probe XML."""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from farside.storage.lun import Lun, check_usable


def probe_xml(path: Path) -> str:
    """``<SRlist>`` with an ``<SR>`` for the LUN at ``path``, or for each LUN directly below it.

    A directory that is not itself a LUN is searched one level down, as probing an iSCSI target
    lists its LUNs; each ``<SR>`` also names its ``<path>`` (a Farside addition), the
    device_config to introduce it with. ``pool_metadata_detected`` is true when the SR holds a
    metadata VDI, the sign that a pool's metadata replicates to it (what the DR wizard looks for).
    """
    root = Lun(check_usable(path))
    # A symlinked entry is never followed: it could lead out of the LUN roots.
    below = (Lun(p) for p in sorted(path.iterdir()) if not p.is_symlink())
    luns = [root] if root.formatted else [lun for lun in below if lun.formatted]
    entries = []
    for lun in luns:
        identity = lun.identity()
        metadata = any(r.get("type") == "metadata" for r in lun.vdi_records().values())
        entries.append(
            "\t<SR>\n"
            f"\t\t<UUID>{escape(identity['uuid'])}</UUID>\n"
            f"\t\t<name_label>{escape(identity.get('name_label', ''))}</name_label>\n"
            f"\t\t<name_description>{escape(identity.get('name_description', ''))}</name_description>\n"
            f"\t\t<pool_metadata_detected>{'true' if metadata else 'false'}</pool_metadata_detected>\n"
            f"\t\t<path>{escape(str(lun.path))}</path>\n"
            "\t</SR>\n"
        )
    if not entries:
        return '<?xml version="1.0" ?>\n<SRlist/>\n'
    return '<?xml version="1.0" ?>\n<SRlist>\n' + "".join(entries) + "</SRlist>\n"
